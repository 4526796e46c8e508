/*  The native transport: ZeroMQ DEALER + protobuf frames (docs/sdk-protocol.md).

    DESIGN. One I/O thread owns the socket; nobody else touches it. Other threads reach
    it through this struct, under `lock`:

      - a call (REQUEST) is put on `calls` with a fresh id, the I/O thread is woken
        through an eventfd, sends it once the session is READY, and completes it when
        the RESPONSE with that id arrives; the caller waits on `cond` (monotonic clock)
        until then or its deadline;
      - ACK and INVOKE_RESULT frames (made by the dispatcher thread after a handler ran)
        go on `out`, tagged with the session they answer; frames for an older session
        are dropped, since the core redelivers what was not acknowledged.

    States of the session:
        HELLO_SENT  a socket is connected (or connecting: ZeroMQ queues the HELLO) and
                    HELLO was sent; no WELCOME yet. No answer within the hello timeout
                    (growing from 2 s to 10 s): close, reconnect, HELLO again.
        READY       WELCOME received; calls flow. PING after heartbeat_ms of our own
                    silence; the peer is dead after 3 x heartbeat_ms without a frame:
                    calls on the wire fail (DISCONNECTED: they may or may not have run),
                    then reconnect.
        CLOSED      the core said BYE (it is stopping): reconnect after a short pause.
        REFUSED     the core refused the token (UNAUTHORIZED) or the protocol: calls fail
                    with 401 at once; no more attempts.
    An ERROR NOT_AUTHENTICATED means the core lost the session (it restarted and
    ZeroMQ reconnected underneath): the refused call was not run, so it goes back to
    the unsent list, and a new HELLO is sent. Each WELCOME after the first asks the
    module (on its dispatcher thread) to subscribe and register its CLI again. */
#include <errno.h>
#include <poll.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "internal.h"
#include "sdk.pb-c.h"

#define DEFAULT_HEARTBEAT_MS 5000
#define HELLO_TIMEOUT_MIN_MS 2000
#define HELLO_TIMEOUT_MAX_MS 10000
#define BYE_PAUSE_MS         500
#define MAX_FRAME            (32 << 20)

typedef Mc__Sdk__Frame frame_t;

typedef enum { S_HELLO_SENT, S_READY, S_CLOSED, S_REFUSED } state_t;

//  One REQUEST and its caller.
typedef struct call_t {
    uint64_t id;         // frame id, module-chosen
    uint8_t *frame;      // the packed REQUEST
    size_t size;         // its bytes
    bool sent;           // on the wire in the current session
    mc_reply_t *reply;   // set when done
    struct call_t *next; // list
} call_t;

//  An ACK or INVOKE_RESULT waiting to be sent.
typedef struct out_t {
    uint64_t session;   // the session it answers
    uint8_t *frame;     // packed
    size_t size;        // bytes
    struct out_t *next; // queue
} out_t;

struct mc_native_t {
    mc_module_t *module; // who we work for (dispatcher work)
    char *endpoint;      // MODCORE_SDK_ENDPOINT
    char *token;         // module token (never logged)
    int heartbeat_ms;    // proposed in HELLO (0: core's default)
    void *ctx;           // ZeroMQ context, ours alone
    pthread_t thread;    // the I/O thread
    int wake_fd;         // eventfd: work for the I/O thread
    //  Shared, under lock
    pthread_mutex_t lock;
    pthread_cond_t cond;        // calls completed, state changed
    state_t state;              // see DESIGN
    uint64_t session;           // number of WELCOMEs so far
    char refusal[64];           // why REFUSED (error code)
    char refusal_detail[256];   // and the core's words
    call_t *calls;              // waiting calls
    out_t *out_head, *out_tail; // frames to send
    uint64_t next_id;           // frame ids
    int agreed_hb;              // heartbeat from WELCOME
    bool stop;                  // the I/O thread should end
    bool joined;                // mc_native_close ran
    //  I/O thread only
    void *sock;            // the DEALER
    int64_t last_recv;     // ms of the last frame from the core
    int64_t last_sent;     // ms of our last frame
    int64_t hello_at;      // when HELLO was sent
    int hello_timeout;     // current wait for WELCOME
    int64_t reconnect_at;  // CLOSED: when to try again
    char curve_public[41]; // our CURVE key pair (tcp:// with a server key)
    char curve_secret[41];
};

//  --- frames ---------------------------------------------------------------------------

static uint8_t *s_pack (frame_t *frame, size_t *size)
{
    *size = mc__sdk__frame__get_packed_size (frame);
    uint8_t *data = malloc (*size ? *size : 1);
    assert (data);
    mc__sdk__frame__pack (frame, data);
    return data;
}

//  Sends bytes on the socket (I/O thread). Returns 0 or -1.
static int s_send_bytes (mc_native_t *self, const uint8_t *data, size_t size)
{
    if (!self->sock)
        return -1;
    int rc = zmq_send (self->sock, data, size, ZMQ_DONTWAIT);
    if (rc < 0) {
        mc_sdk_log ("native: cannot send a frame: %s", zmq_strerror (errno));
        return -1;
    }
    self->last_sent = mc_sdk_now_ms ();
    return 0;
}

static int s_send_frame (mc_native_t *self, frame_t *frame)
{
    size_t size;
    uint8_t *data = s_pack (frame, &size);
    int rc = s_send_bytes (self, data, size);
    free (data);
    return rc;
}

static uint64_t s_next_id (mc_native_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t id = ++self->next_id;
    pthread_mutex_unlock (&self->lock);
    return id;
}

static void s_wake (mc_native_t *self)
{
    uint64_t one = 1;
    ssize_t rc = write (self->wake_fd, &one, sizeof one);
    (void)rc; // a full counter still wakes the thread
}

//  --- session --------------------------------------------------------------------------

static void s_send_hello (mc_native_t *self)
{
    Mc__Sdk__Hello hello = MC__SDK__HELLO__INIT;
    hello.token = self->token;
    hello.sdk = MC_SDK_AGENT;
    hello.protocol = 1;
    hello.heartbeat_ms = (uint32_t)self->heartbeat_ms;
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = s_next_id (self);
    frame.body_case = MC__SDK__FRAME__BODY_HELLO;
    frame.hello = &hello;
    s_send_frame (self, &frame);
    self->hello_at = mc_sdk_now_ms ();
    pthread_mutex_lock (&self->lock);
    self->state = S_HELLO_SENT;
    pthread_mutex_unlock (&self->lock);
}

//  Closes the socket (if any), opens a new one and sends HELLO.
static void s_connect (mc_native_t *self)
{
    if (self->sock) {
        int linger = 0;
        zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close (self->sock);
    }
    self->sock = zmq_socket (self->ctx, ZMQ_DEALER);
    assert (self->sock);
    int linger = 0, ivl = 100, ivl_max = 1000;
    int64_t max_size = MAX_FRAME;
    zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt (self->sock, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    zmq_setsockopt (self->sock, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size);
    const char *server_key = getenv ("MODCORE_SDK_SERVER_KEY");
    if (strncmp (self->endpoint, "tcp://", 6) == 0 && server_key && strlen (server_key) == 40) {
        if (!*self->curve_public && zmq_curve_keypair (self->curve_public, self->curve_secret))
            mc_sdk_log ("native: CURVE is not available in this libzmq");
        zmq_setsockopt (self->sock, ZMQ_CURVE_SERVERKEY, server_key, 40);
        zmq_setsockopt (self->sock, ZMQ_CURVE_PUBLICKEY, self->curve_public, 40);
        zmq_setsockopt (self->sock, ZMQ_CURVE_SECRETKEY, self->curve_secret, 40);
    }
    if (zmq_connect (self->sock, self->endpoint) != 0)
        mc_sdk_log ("native: cannot connect to %s: %s", self->endpoint, zmq_strerror (errno));
    self->last_recv = self->last_sent = mc_sdk_now_ms ();
    s_send_hello (self);
}

//  Fails the calls already on the wire (lock held): their outcome is unknown.
static void s_fail_sent (mc_native_t *self, const char *why)
{
    for (call_t *call = self->calls; call; call = call->next)
        if (call->sent && !call->reply)
            call->reply = mc_reply_error (0, "DISCONNECTED", "%s", why);
    pthread_cond_broadcast (&self->cond);
}

//  Session lost: fail what is on the wire and start over (I/O thread).
static void s_reconnect (mc_native_t *self, const char *why)
{
    pthread_mutex_lock (&self->lock);
    s_fail_sent (self, why);
    pthread_mutex_unlock (&self->lock);
    s_connect (self);
}

//  Sends the unsent calls and the queued answers (lock held, READY).
static void s_flush (mc_native_t *self)
{
    if (self->state != S_READY)
        return;
    for (call_t *call = self->calls; call; call = call->next)
        if (!call->sent && !call->reply && s_send_bytes (self, call->frame, call->size) == 0)
            call->sent = true;
    while (self->out_head) {
        out_t *out = self->out_head;
        self->out_head = out->next;
        if (out->session == self->session)
            s_send_bytes (self, out->frame, out->size);
        free (out->frame);
        free (out);
    }
    self->out_tail = NULL;
}

//  --- incoming frames ------------------------------------------------------------------

static call_t *s_find_call (mc_native_t *self, uint64_t id)
{
    for (call_t *call = self->calls; call; call = call->next)
        if (call->id == id)
            return call;
    return NULL;
}

static void s_on_error (mc_native_t *self, uint64_t id, const Mc__Sdk__Error *error)
{
    const char *code = error->code && *error->code ? error->code : "ERROR";
    const char *detail = error->detail ? error->detail : "";
    pthread_mutex_lock (&self->lock);
    bool refused = strcmp (code, "UNAUTHORIZED") == 0 ||
                   (self->state == S_HELLO_SENT && strcmp (code, "UNSUPPORTED_PROTOCOL") == 0);
    if (refused) {
        self->state = S_REFUSED;
        snprintf (self->refusal, sizeof self->refusal, "%s", code);
        snprintf (self->refusal_detail, sizeof self->refusal_detail, "%s", detail);
        for (call_t *call = self->calls; call; call = call->next)
            if (!call->reply)
                call->reply = mc_reply_error (401, code, "%s", detail);
        pthread_cond_broadcast (&self->cond);
        pthread_mutex_unlock (&self->lock);
        mc_sdk_log ("native: the core refused the session: %s %s", code, detail);
        return;
    }
    call_t *call = s_find_call (self, id);
    if (strcmp (code, "NOT_AUTHENTICATED") == 0) {
        //  The core does not know this socket (it restarted): the call did not run.
        if (call)
            call->sent = false;
        bool hello = self->state != S_HELLO_SENT;
        pthread_mutex_unlock (&self->lock);
        if (hello) {
            mc_sdk_log ("native: the core lost the session; saying HELLO again");
            s_send_hello (self);
        }
        return;
    }
    if (call && call->sent && !call->reply) {
        call->reply = mc_reply_error (400, code, "%s", detail);
        pthread_cond_broadcast (&self->cond);
        pthread_mutex_unlock (&self->lock);
        return;
    }
    bool waiting_hello = self->state == S_HELLO_SENT;
    if (waiting_hello) {
        //  HELLO refused for a passing reason (rate limit...): try again shortly.
        self->state = S_CLOSED;
        self->reconnect_at = mc_sdk_now_ms () + 1000;
    }
    pthread_mutex_unlock (&self->lock);
    mc_sdk_log ("native: the core answered ERROR %s: %s", code, detail);
}

static void s_on_frame (mc_native_t *self, const uint8_t *data, size_t size)
{
    frame_t *frame = mc__sdk__frame__unpack (NULL, size, data);
    if (!frame) {
        mc_sdk_log ("native: a frame from the core does not decode (%zu bytes)", size);
        return;
    }
    self->last_recv = mc_sdk_now_ms ();
    switch (frame->body_case) {
        case MC__SDK__FRAME__BODY_WELCOME: {
            pthread_mutex_lock (&self->lock);
            bool again = self->session > 0;
            self->session++;
            self->state = S_READY;
            self->agreed_hb = frame->welcome->heartbeat_ms ? (int)frame->welcome->heartbeat_ms
                                                           : DEFAULT_HEARTBEAT_MS;
            self->hello_timeout = HELLO_TIMEOUT_MIN_MS;
            uint64_t session = self->session;
            s_flush (self);
            pthread_cond_broadcast (&self->cond);
            pthread_mutex_unlock (&self->lock);
            if (again) {
                mc_sdk_log ("native: new session with the core (%s)", self->endpoint);
                work_t *work = calloc (1, sizeof *work);
                assert (work);
                work->kind = WORK_RESYNC;
                work->session = session;
                mc_module_post_work (self->module, work);
            }
            break;
        }
        case MC__SDK__FRAME__BODY_RESPONSE: {
            pthread_mutex_lock (&self->lock);
            call_t *call = s_find_call (self, frame->id);
            if (call && !call->reply) {
                Mc__Sdk__Response *response = frame->response;
                call->reply = mc_reply_from_body (
                    (int)response->status, (const char *)response->body.data, response->body.len);
                if (response->status == 429)
                    call->reply->retry_after =
                        response->retry_after_s ? (int)response->retry_after_s : 1;
                pthread_cond_broadcast (&self->cond);
            }
            pthread_mutex_unlock (&self->lock);
            break;
        }
        case MC__SDK__FRAME__BODY_EVENT: {
            work_t *work = calloc (1, sizeof *work);
            assert (work);
            work->kind = WORK_EVENT;
            work->frame_id = frame->id;
            pthread_mutex_lock (&self->lock);
            work->session = self->session;
            pthread_mutex_unlock (&self->lock);
            work->size = frame->event->json.len;
            work->data = malloc (work->size + 1);
            assert (work->data);
            memcpy (work->data, frame->event->json.data, work->size);
            work->data[work->size] = 0;
            mc_module_post_work (self->module, work);
            break;
        }
        case MC__SDK__FRAME__BODY_INVOKE: {
            work_t *work = calloc (1, sizeof *work);
            assert (work);
            work->kind = WORK_INVOKE;
            work->frame_id = frame->id;
            pthread_mutex_lock (&self->lock);
            work->session = self->session;
            pthread_mutex_unlock (&self->lock);
            work->data = strdup (frame->invoke->subcommand ? frame->invoke->subcommand : "");
            work->args_json = strdup (frame->invoke->args_json && *frame->invoke->args_json
                                          ? frame->invoke->args_json
                                          : "{}");
            assert (work->data && work->args_json);
            mc_module_post_work (self->module, work);
            break;
        }
        case MC__SDK__FRAME__BODY_PING: {
            Mc__Sdk__Pong pong = MC__SDK__PONG__INIT;
            frame_t answer = MC__SDK__FRAME__INIT;
            answer.id = frame->id;
            answer.body_case = MC__SDK__FRAME__BODY_PONG;
            answer.pong = &pong;
            s_send_frame (self, &answer);
            break;
        }
        case MC__SDK__FRAME__BODY_PONG:
            break; // traffic is all it says
        case MC__SDK__FRAME__BODY_ERROR:
            s_on_error (self, frame->id, frame->error);
            break;
        case MC__SDK__FRAME__BODY_BYE:
            mc_sdk_log ("native: the core ended the session (%s)",
                        frame->bye->reason && *frame->bye->reason ? frame->bye->reason : "BYE");
            pthread_mutex_lock (&self->lock);
            if (self->state != S_REFUSED) {
                self->state = S_CLOSED;
                self->reconnect_at = mc_sdk_now_ms () + BYE_PAUSE_MS;
            }
            s_fail_sent (self, "the core ended the session");
            pthread_mutex_unlock (&self->lock);
            break;
        case MC__SDK__FRAME__BODY_HELLO:
        case MC__SDK__FRAME__BODY_REQUEST:
        case MC__SDK__FRAME__BODY_ACK:
        case MC__SDK__FRAME__BODY_INVOKE_RESULT:
        case MC__SDK__FRAME__BODY__NOT_SET:
        case _MC__SDK__FRAME__BODY__CASE_IS_INT_SIZE:
            mc_sdk_log ("native: unexpected frame %d from the core", (int)frame->body_case);
            break;
    }
    mc__sdk__frame__free_unpacked (frame, NULL);
}

//  --- the I/O thread -------------------------------------------------------------------

//  Timers: hello timeout, heartbeat, dead peer, reconnect after BYE.
static void s_on_time (mc_native_t *self)
{
    int64_t now = mc_sdk_now_ms ();
    pthread_mutex_lock (&self->lock);
    state_t state = self->state;
    int hb = self->agreed_hb ? self->agreed_hb : DEFAULT_HEARTBEAT_MS;
    pthread_mutex_unlock (&self->lock);
    switch (state) {
        case S_HELLO_SENT:
            if (now - self->hello_at >= self->hello_timeout) {
                self->hello_timeout = self->hello_timeout * 2 < HELLO_TIMEOUT_MAX_MS
                                          ? self->hello_timeout * 2
                                          : HELLO_TIMEOUT_MAX_MS;
                s_connect (self);
            }
            break;
        case S_READY:
            if (now - self->last_recv >= 3 * (int64_t)hb) {
                mc_sdk_log ("native: no frame from the core for %d ms; reconnecting", 3 * hb);
                s_reconnect (self, "the core stopped answering");
            } else if (now - self->last_sent >= hb) {
                Mc__Sdk__Ping ping = MC__SDK__PING__INIT;
                frame_t frame = MC__SDK__FRAME__INIT;
                frame.id = s_next_id (self);
                frame.body_case = MC__SDK__FRAME__BODY_PING;
                frame.ping = &ping;
                s_send_frame (self, &frame);
            }
            break;
        case S_CLOSED:
            if (now >= self->reconnect_at)
                s_connect (self);
            break;
        case S_REFUSED:
            break;
    }
}

static void *s_io_thread (void *arg)
{
    mc_native_t *self = arg;
    s_connect (self);
    while (true) {
        zmq_pollitem_t items[] = {{self->sock, 0, ZMQ_POLLIN, 0},
                                  {NULL, self->wake_fd, ZMQ_POLLIN, 0}};
        int rc = zmq_poll (items, 2, 100);
        if (rc < 0 && errno != EINTR) {
            mc_sdk_log ("native: poll failed: %s", zmq_strerror (errno));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            uint64_t count;
            ssize_t n = read (self->wake_fd, &count, sizeof count);
            (void)n;
        }
        pthread_mutex_lock (&self->lock);
        bool stop = self->stop;
        if (!stop)
            s_flush (self);
        pthread_mutex_unlock (&self->lock);
        if (stop)
            break;
        //  Everything waiting on the socket
        while (true) {
            zmq_msg_t msg;
            zmq_msg_init (&msg);
            if (zmq_msg_recv (&msg, self->sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&msg);
                break;
            }
            s_on_frame (self, zmq_msg_data (&msg), zmq_msg_size (&msg));
            zmq_msg_close (&msg);
        }
        pthread_mutex_lock (&self->lock);
        s_flush (self);
        pthread_mutex_unlock (&self->lock);
        s_on_time (self);
    }
    //  A polite end: BYE, given a moment to leave.
    pthread_mutex_lock (&self->lock);
    bool ready = self->state == S_READY;
    pthread_mutex_unlock (&self->lock);
    if (ready) {
        Mc__Sdk__Bye bye = MC__SDK__BYE__INIT;
        bye.reason = "module stopping";
        frame_t frame = MC__SDK__FRAME__INIT;
        frame.id = s_next_id (self);
        frame.body_case = MC__SDK__FRAME__BODY_BYE;
        frame.bye = &bye;
        int linger = 500;
        zmq_setsockopt (self->sock, ZMQ_LINGER, &linger, sizeof linger);
        s_send_frame (self, &frame);
    }
    zmq_close (self->sock);
    self->sock = NULL;
    return NULL;
}

//  --- API ------------------------------------------------------------------------------

//  Deadline for pthread_cond_timedwait on the monotonic clock.
static struct timespec s_deadline (int timeout_ms)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

mc_native_t *mc_native_start (mc_module_t *module, const char *endpoint, const char *token,
                              int heartbeat_ms, int timeout_ms, char *code, size_t code_size)
{
    assert (module && code);
    if (!endpoint || !*endpoint) {
        snprintf (code, code_size, "NOT_CONNECTED");
        mc_sdk_log ("native: no endpoint (MODCORE_SDK_ENDPOINT is not set)");
        return NULL;
    }
    mc_native_t *self = calloc (1, sizeof *self);
    assert (self);
    self->module = module;
    self->endpoint = strdup (endpoint);
    self->token = strdup (token ? token : "");
    assert (self->endpoint && self->token);
    self->heartbeat_ms = heartbeat_ms > 0 ? heartbeat_ms : 0;
    self->hello_timeout = HELLO_TIMEOUT_MIN_MS;
    self->ctx = zmq_ctx_new ();
    assert (self->ctx);
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert (self->wake_fd >= 0);
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->cond, &attr);
    pthread_condattr_destroy (&attr);
    self->state = S_HELLO_SENT;
    int rc = pthread_create (&self->thread, NULL, s_io_thread, self);
    assert (rc == 0);

    struct timespec deadline = s_deadline (timeout_ms);
    pthread_mutex_lock (&self->lock);
    while (self->state != S_READY && self->state != S_REFUSED)
        if (pthread_cond_timedwait (&self->cond, &self->lock, &deadline) == ETIMEDOUT)
            break;
    state_t state = self->state;
    if (state == S_REFUSED)
        snprintf (code, code_size, "%s", self->refusal);
    pthread_mutex_unlock (&self->lock);
    if (state == S_READY)
        return self;
    if (state != S_REFUSED) {
        snprintf (code, code_size, "TIMEOUT");
        mc_sdk_log ("native: no WELCOME from %s within %d ms", endpoint, timeout_ms);
    }
    mc_native_stop (&self);
    return NULL;
}

void mc_native_close (mc_native_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    bool joined = self->joined;
    self->stop = true;
    self->joined = true;
    pthread_mutex_unlock (&self->lock);
    if (joined)
        return;
    s_wake (self);
    pthread_join (self->thread, NULL);
    //  Callers still waiting get their answer now.
    pthread_mutex_lock (&self->lock);
    for (call_t *call = self->calls; call; call = call->next)
        if (!call->reply)
            call->reply = mc_reply_error (0, "NOT_CONNECTED", "the module is stopping");
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

void mc_native_stop (mc_native_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mc_native_t *self = *self_p;
    mc_native_close (self);
    //  No caller may be left inside mc_native_call once the object is freed.
    pthread_mutex_lock (&self->lock);
    while (self->calls)
        pthread_cond_wait (&self->cond, &self->lock);
    while (self->out_head) {
        out_t *out = self->out_head;
        self->out_head = out->next;
        free (out->frame);
        free (out);
    }
    pthread_mutex_unlock (&self->lock);
    zmq_ctx_term (self->ctx);
    close (self->wake_fd);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    sodium_memzero (self->token, strlen (self->token));
    free (self->token);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

mc_reply_t *mc_native_call (mc_native_t *self, const char *method, const char *path,
                            const char *body, int timeout_ms)
{
    assert (self && method && path);
    Mc__Sdk__Request request = MC__SDK__REQUEST__INIT;
    request.method = (char *)method;
    request.path = (char *)path;
    if (body) {
        request.body.data = (uint8_t *)body;
        request.body.len = strlen (body);
    }
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.body_case = MC__SDK__FRAME__BODY_REQUEST;
    frame.request = &request;

    call_t *call = calloc (1, sizeof *call);
    assert (call);
    pthread_mutex_lock (&self->lock);
    if (self->state == S_REFUSED) {
        mc_reply_t *reply = mc_reply_error (401, self->refusal, "%s", self->refusal_detail);
        pthread_mutex_unlock (&self->lock);
        free (call);
        return reply;
    }
    if (self->stop) {
        pthread_mutex_unlock (&self->lock);
        free (call);
        return mc_reply_error (0, "NOT_CONNECTED", "the module is stopping");
    }
    call->id = frame.id = ++self->next_id;
    call->frame = s_pack (&frame, &call->size);
    call->next = self->calls;
    self->calls = call;
    pthread_mutex_unlock (&self->lock);
    s_wake (self);

    struct timespec deadline = s_deadline (timeout_ms);
    pthread_mutex_lock (&self->lock);
    while (!call->reply)
        if (pthread_cond_timedwait (&self->cond, &self->lock, &deadline) == ETIMEDOUT)
            break;
    mc_reply_t *reply = call->reply;
    if (!reply)
        reply = call->sent ? mc_reply_error (0, "TIMEOUT", "%s %s: no answer within %d ms", method,
                                             path, timeout_ms)
                           : mc_reply_error (0, "NOT_CONNECTED",
                                             "%s %s: no session with the core within %d ms", method,
                                             path, timeout_ms);
    for (call_t **p = &self->calls; *p; p = &(*p)->next)
        if (*p == call) {
            *p = call->next;
            break;
        }
    pthread_cond_broadcast (&self->cond); // mc_native_stop waits for the list to empty
    pthread_mutex_unlock (&self->lock);
    free (call->frame);
    free (call);
    return reply;
}

static void s_queue (mc_native_t *self, uint64_t session, frame_t *frame)
{
    out_t *out = calloc (1, sizeof *out);
    assert (out);
    out->session = session;
    out->frame = s_pack (frame, &out->size);
    pthread_mutex_lock (&self->lock);
    if (self->out_tail)
        self->out_tail->next = out;
    else
        self->out_head = out;
    self->out_tail = out;
    pthread_mutex_unlock (&self->lock);
    s_wake (self);
}

void mc_native_ack (mc_native_t *self, uint64_t session, uint64_t frame_id, bool ok)
{
    Mc__Sdk__Ack ack = MC__SDK__ACK__INIT;
    ack.ok = ok;
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = frame_id;
    frame.body_case = MC__SDK__FRAME__BODY_ACK;
    frame.ack = &ack;
    s_queue (self, session, &frame);
}

void mc_native_invoke_result (mc_native_t *self, uint64_t session, uint64_t frame_id, int exit_code,
                              const char *out, const char *err)
{
    Mc__Sdk__InvokeResult result = MC__SDK__INVOKE_RESULT__INIT;
    result.exit_code = exit_code;
    result.stdout = (char *)(out ? out : "");
    result.stderr = (char *)(err ? err : "");
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = frame_id;
    frame.body_case = MC__SDK__FRAME__BODY_INVOKE_RESULT;
    frame.invoke_result = &result;
    s_queue (self, session, &frame);
}
