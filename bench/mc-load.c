/*  mc-load: a load generator that plays N modules against modcore.

    DESIGN. Each module is a token. In open-loop mode every token has its own schedule
    (rate r: one request due every 1/r s, the N schedules evenly phased); a request is
    due at its time whether or not earlier ones were answered, and its latency is
    measured from that scheduled time, so a server that falls behind shows its queueing
    delay instead of quietly slowing the client down (no coordinated omission). In
    closed-loop mode (--closed K) K connections each send the next request as soon as
    the previous one is answered: the maximum-throughput probe.

    Transports:
    - http: a minimal non-blocking HTTP/1.1 client on epoll. Keep-alive connections
      (one per token by default, or --connections C shared round-robin), TCP_NODELAY,
      each request written with one send(). One request in flight per connection (no
      pipelining); requests due meanwhile wait in the connection's queue, their clock
      running. A connection the server closed is reopened when the next request is
      due; a request lost that way is sent again once. "Answered connections" counts
      connections that got at least one response: civetweb ties a keep-alive
      connection to one worker thread, and connections beyond its thread count wait
      unanswered without any error.
    - native: one ZeroMQ DEALER per token speaking docs/sdk-protocol.md (HELLO, then
      REQUESTs with ids; responses matched by id, in any order). Against bench/zmq_echo
      (which returns every frame unchanged) an echoed HELLO counts as WELCOME and an
      echoed REQUEST as a 200: the raw ZeroMQ baseline with the same client. By default
      each DEALER speaks ZMTP 3.0 itself on a plain socket (bench/zmtp.c): with libzmq
      sockets (--libzmq) the client spent more CPU than the core it measured, on the
      same cores. The server sees the same protocol either way.

    Threads: --threads T shards connections (and their tokens) over T threads, each
    with its own epoll loop, histogram and counters, merged at the end of each step.
    Steps: --rates a,b,c runs one step per per-token rate (the latency-vs-load series);
    between steps the client stops issuing and waits for the answers (or timeouts).

    Every run is bounded: --duration per step, --requests in total, --timeout per
    request. Output: a summary on stdout, one CSV row per step (--csv), a gnuplot
    series (--series) and per-token counters (--per-token). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "hist.h"
#include "zmtp.h"
#include "sdk.pb-c.h"

#define RBUF_SIZE    (64 * 1024) // one HTTP response must fit
#define QUEUE_CAP    4096        // requests waiting per HTTP connection
#define SLOT_CAP     4096        // requests outstanding per native session
#define SWEEP_NS     2000000ull  // timeout sweep period
#define DRAIN_SWEEPS 50          // every native socket drained every 50 sweeps (100 ms)
#define MAX_EVENTS   256         // epoll batch
#define HELLO_WAIT_S 15          // native: how long to wait for every WELCOME

//  What happened to one request.
enum { C_SENT, C_2XX, C_401, C_403, C_429, C_5XX, C_OTHER, C_TIMEOUT, C_ERROR, C_COUNT };
static const char *const s_counter_names[C_COUNT] = {"sent", "ok_2xx", "s401",     "s403",  "s429",
                                                     "s5xx", "other",  "timeouts", "errors"};

//  --- options (read-only once threads start) ------------------------------------------

typedef struct {
    bool native;           // --transport native
    bool libzmq;           // --libzmq: native sessions are libzmq sockets
    char host[64];         // HTTP target host (numeric IPv4)
    int port;              // HTTP target port
    char path[512];        // HTTP path; native: path below /api/v1
    char method[16];       // GET, POST, ...
    char *body;            // request body, or NULL
    char endpoint[512];    // native: ZeroMQ endpoint
    char **tokens;         // the distinct tokens given
    size_t token_count;    // how many
    bool no_auth;          // send no Authorization header
    size_t modules;        // N: tokens played (cycling through `tokens`)
    double *rates;         // per-token rate of each step (open loop)
    size_t step_count;     // steps
    size_t fast_count;     // the first K tokens are offered fast_rate instead
    double fast_rate;      // req/s of those
    size_t connections;    // HTTP connections (open loop), default N
    size_t closed;         // closed loop: K connections/sockets, 0 = open loop
    size_t depth;          // closed loop native: requests outstanding per socket
    double duration_s;     // per step
    double warmup_s;       // open loop: first seconds of step 1 not recorded
    uint64_t max_requests; // total bound over the run (0 = none)
    uint64_t timeout_ns;   // per request
    size_t threads;        // client threads
    const char *label;     // CSV label
    const char *csv_path;  // --csv
    const char *series;    // --series
    const char *per_token; // --per-token
    bool quiet;            // no per-step summary
} options_t;

static options_t s_opt;

//  --- time ---------------------------------------------------------------------------

static uint64_t s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

//  --- per-thread state ---------------------------------------------------------------

//  One request: whose, and when it was due (open loop) or sent (closed loop).
typedef struct {
    uint32_t token; // index into the N played tokens
    uint64_t sched; // ns, monotonic
} job_t;

typedef enum { CONN_CLOSED, CONN_CONNECTING, CONN_OPEN } conn_state_t;

//  One HTTP connection.
typedef struct {
    int fd;                // socket, -1 when closed
    conn_state_t state;    // see above
    bool busy;             // the head job is written, its answer awaited
    bool head_retried;     // the head job was already sent once on a lost connection
    job_t jobs[QUEUE_CAP]; // ring: head in flight when busy, the rest waiting
    uint32_t head, len;    // ring position and length
    char *rbuf;            // received bytes not parsed yet
    size_t rlen;           // their count
    const char *wbuf;      // the request being written (partial write)
    size_t woff, wlen;     // progress
    bool answered;         // got a response in this step
    uint32_t token;        // closed loop: the token this connection plays
} conn_t;

//  One native session (one DEALER, one token).
typedef struct {
    void *sock;             // DEALER (--libzmq), or NULL
    zmtp_t zmtp;            // the DEALER spoken directly (default)
    int epfd;               // the epoll set it is in
    uint32_t index;         // its index in the thread's sessions (epoll data)
    bool want_out;          // registered for EPOLLOUT (bytes wait to be written)
    int fd;                 // ZMQ_FD (--libzmq) or the socket, for epoll
    uint32_t token;         // the token it said HELLO with
    bool welcomed;          // WELCOME (or echoed HELLO) received
    bool refused;           // ERROR to the HELLO
    bool answered;          // got a response in this step
    bool draining;          // inside s_sess_drain (no re-entry from a send)
    uint64_t next_id;       // id of the next REQUEST
    uint64_t lo;            // lowest id possibly outstanding
    uint32_t inflight;      // outstanding requests
    job_t slots[SLOT_CAP];  // by id % SLOT_CAP; sched 0 = done
    uint64_t ids[SLOT_CAP]; // the id each slot holds
} sess_t;

typedef struct {
    uint64_t due;   // next due time
    uint32_t token; // whose
} heap_item_t;

typedef struct {
    size_t index;                // thread number
    pthread_t thread;            // the thread
    int epfd;                    // epoll
    conn_t *conns;               // HTTP connections of this thread
    size_t conn_count;           // their number
    sess_t *sess;                // native sessions of this thread
    size_t sess_count;           // their number
    uint32_t *my_tokens;         // open loop: tokens scheduled by this thread
    size_t my_token_count;       // their number
    heap_item_t *heap;           // open loop schedule (min-heap by due)
    size_t heap_len;             // entries
    hist_t hist;                 // latency of this step
    uint64_t (*counts)[C_COUNT]; // per token, this step
    uint64_t lag_max_ns;         // worst issue lag behind schedule (client saturation)
    double lag_sum_ns;           // for the mean
    uint64_t issued;             // requests issued this step
    uint64_t reconnects;         // connections reopened
    uint64_t inflight;           // requests sent or queued, not finished
    bool issuing;                // the step still issues requests
    uint64_t step_start;         // ns
    uint64_t measure_from;       // requests due before this are not recorded
    uint64_t hello_failed;       // native: sessions without WELCOME
    uint64_t last_finish;        // when the last request of this step ended
} worker_t;

static worker_t *s_workers;
static pthread_barrier_t s_barrier;
static atomic_uint_fast64_t s_budget;       // requests left in total (if bounded)
static volatile sig_atomic_t s_interrupted; // SIGINT: finish the step early
static char **s_requests;                   // HTTP: prebuilt request text per token
static size_t *s_request_lens;              // their lengths
static void *s_zmq;                         // ZeroMQ context
static uint64_t s_step_start;               // common start of the current step
static size_t s_step;                       // current step

//  Token index -> the token text.
static const char *s_token (uint32_t token)
{
    return s_opt.tokens[token % s_opt.token_count];
}

static double s_rate_of (uint32_t token)
{
    return token < s_opt.fast_count ? s_opt.fast_rate : s_opt.rates[s_step];
}

//  Takes one unit of the total request budget; false when exhausted.
static bool s_take_budget (void)
{
    if (!s_opt.max_requests)
        return true;
    uint_fast64_t left = atomic_load (&s_budget);
    while (left > 0)
        if (atomic_compare_exchange_weak (&s_budget, &left, left - 1))
            return true;
    return false;
}

//  Records how a job ended. latency from job->sched.
static void s_finish (worker_t *w, const job_t *job, int counter, uint64_t now)
{
    w->inflight--;
    w->last_finish = now;
    if (job->sched < w->measure_from)
        return;
    w->counts[job->token][counter]++;
    if (counter != C_TIMEOUT && counter != C_ERROR)
        hist_record (&w->hist, now > job->sched ? (now - job->sched) / 1000 : 0);
}

static int s_status_counter (int status)
{
    if (status >= 200 && status < 300)
        return C_2XX;
    if (status == 401)
        return C_401;
    if (status == 403)
        return C_403;
    if (status == 429)
        return C_429;
    if (status >= 500 && status < 600)
        return C_5XX;
    return C_OTHER;
}

//  --- open-loop schedule: a binary min-heap --------------------------------------------

static void s_heap_push (worker_t *w, uint64_t due, uint32_t token)
{
    size_t i = w->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (w->heap[parent].due <= due)
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = (heap_item_t){due, token};
}

static heap_item_t s_heap_pop (worker_t *w)
{
    heap_item_t top = w->heap[0];
    heap_item_t last = w->heap[--w->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= w->heap_len)
            break;
        if (child + 1 < w->heap_len && w->heap[child + 1].due < w->heap[child].due)
            child++;
        if (last.due <= w->heap[child].due)
            break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (w->heap_len)
        w->heap[i] = last;
    return top;
}

//  --- HTTP -----------------------------------------------------------------------------

static void s_conn_close (worker_t *w, conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl (w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close (c->fd);
    }
    c->fd = -1;
    c->state = CONN_CLOSED;
    c->busy = false;
    c->rlen = 0;
    c->wlen = c->woff = 0;
}

static void s_conn_pop (conn_t *c)
{
    c->head = (c->head + 1) % QUEUE_CAP;
    c->len--;
    c->head_retried = false;
}

static void s_conn_connect (worker_t *w, conn_t *c)
{
    c->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf (stderr, "mc-load: socket: %s\n", strerror (errno));
        return;
    }
    int one = 1;
    setsockopt (c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)s_opt.port)};
    inet_pton (AF_INET, s_opt.host, &addr.sin_addr);
    int rc = connect (c->fd, (struct sockaddr *)&addr, sizeof addr);
    if (rc != 0 && errno != EINPROGRESS) {
        close (c->fd);
        c->fd = -1;
        return;
    }
    c->state = CONN_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)(c - w->conns)};
    epoll_ctl (w->epfd, EPOLL_CTL_ADD, c->fd, &ev);
    w->reconnects++;
}

//  Writes what is left of the current request. Returns -1 if the connection broke.
static int s_conn_flush (worker_t *w, conn_t *c)
{
    while (c->woff < c->wlen) {
        ssize_t n = send (c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0)
            c->woff += (size_t)n;
        else if (n < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT,
                                     .data.u64 = (uint64_t)(c - w->conns)};
            epoll_ctl (w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            return 0;
        } else
            return -1;
    }
    return 0;
}

static void s_conn_lost (worker_t *w, conn_t *c, uint64_t now);

//  Sends the head job if the connection is free; opens the connection if needed.
static void s_conn_kick (worker_t *w, conn_t *c, uint64_t now)
{
    if (c->busy || c->len == 0)
        return;
    if (c->state == CONN_CLOSED) {
        s_conn_connect (w, c);
        if (c->state == CONN_CLOSED) { // cannot even start connecting: fail the head
            job_t job = c->jobs[c->head];
            s_conn_pop (c);
            s_finish (w, &job, C_ERROR, now);
        }
        return;
    }
    if (c->state != CONN_OPEN)
        return;
    job_t *job = &c->jobs[c->head];
    if (s_opt.closed)
        job->sched = now; // closed loop: latency from the send
    c->wbuf = s_requests[job->token];
    c->wlen = s_request_lens[job->token];
    c->woff = 0;
    c->busy = true;
    if (s_conn_flush (w, c) != 0)
        s_conn_lost (w, c, now);
}

//  The connection broke or was closed by the server. An in-flight head is sent again
//  once (keep-alive close races), then counted as an error.
static void s_conn_lost (worker_t *w, conn_t *c, uint64_t now)
{
    bool was_busy = c->busy;
    s_conn_close (w, c);
    if (was_busy && c->len > 0) {
        if (c->head_retried) {
            job_t job = c->jobs[c->head];
            s_conn_pop (c);
            s_finish (w, &job, C_ERROR, now);
        } else
            c->head_retried = true;
    }
    s_conn_kick (w, c, now);
}

static void s_submit_http (worker_t *w, conn_t *c, job_t job, uint64_t now)
{
    w->inflight++;
    if (c->len == QUEUE_CAP) { // the client's own queue overflowed
        s_finish (w, &job, C_ERROR, now);
        return;
    }
    c->jobs[(c->head + c->len) % QUEUE_CAP] = job;
    c->len++;
    s_conn_kick (w, c, now);
}

//  Parses one complete response at the start of c->rbuf. Returns its length (0: more
//  bytes needed, -1: not HTTP) and fills *status and *close.
static long s_parse_response (conn_t *c, int *status, bool *close_after)
{
    char *end = memmem (c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end)
        return c->rlen >= RBUF_SIZE ? -1 : 0;
    if (c->rlen < 12 || memcmp (c->rbuf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi (c->rbuf + 9);
    *close_after = false;
    long content_length = 0;
    size_t head_len = (size_t)(end - c->rbuf) + 4;
    for (char *line = memchr (c->rbuf, '\n', head_len); line && line < end;
         line = memchr (line + 1, '\n', (size_t)(end - line))) {
        line++;
        if (strncasecmp (line, "content-length:", 15) == 0)
            content_length = strtol (line + 15, NULL, 10);
        else if (strncasecmp (line, "connection:", 11) == 0) {
            const char *v = line + 11;
            while (*v == ' ')
                v++;
            if (strncasecmp (v, "close", 5) == 0)
                *close_after = true;
        } else if (strncasecmp (line, "transfer-encoding:", 18) == 0)
            return -1; // chunked: not needed by any target here
    }
    if (head_len + (size_t)content_length > RBUF_SIZE)
        return -1;
    if (c->rlen < head_len + (size_t)content_length)
        return 0;
    return (long)(head_len + (size_t)content_length);
}

static void s_conn_readable (worker_t *w, conn_t *c, uint64_t now)
{
    for (;;) {
        ssize_t n = recv (c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            s_conn_lost (w, c, now);
            return;
        }
        if (n < 0)
            break;
        now = s_now (); // the answer may have come while this loop ran: not the batch's time
        c->rlen += (size_t)n;
        for (;;) {
            int status = 0;
            bool close_after = false;
            long used = s_parse_response (c, &status, &close_after);
            if (used < 0) {
                fprintf (stderr, "mc-load: unparseable response; closing\n");
                if (c->busy && c->len) {
                    job_t job = c->jobs[c->head];
                    s_conn_pop (c);
                    s_finish (w, &job, C_ERROR, now);
                }
                s_conn_close (w, c);
                s_conn_kick (w, c, now);
                return;
            }
            if (used == 0)
                break;
            memmove (c->rbuf, c->rbuf + used, c->rlen - (size_t)used);
            c->rlen -= (size_t)used;
            if (!c->busy || c->len == 0)
                continue; // an answer nobody waits for (timed out): drop it
            job_t job = c->jobs[c->head];
            s_conn_pop (c);
            c->busy = false;
            if (job.sched >= w->measure_from)
                c->answered = true;
            s_finish (w, &job, s_status_counter (status), now);
            if (close_after)
                s_conn_close (w, c);
            if (s_opt.closed && w->issuing && s_take_budget ()) {
                w->issued++;
                job_t next = {c->token, now};
                s_submit_http (w, c, next, now);
            } else
                s_conn_kick (w, c, now);
            if (c->state != CONN_OPEN)
                return;
        }
        if (c->rlen == RBUF_SIZE) {
            s_conn_lost (w, c, now);
            return;
        }
        if (c->rlen == 0)
            return; // all parsed: epoll (level-triggered) says when more comes
    }
}

static void s_conn_event (worker_t *w, conn_t *c, uint32_t events, uint64_t now)
{
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt (c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            s_conn_close (w, c);
            if (c->len) { // connection refused: fail the head, try again for the rest
                job_t job = c->jobs[c->head];
                s_conn_pop (c);
                s_finish (w, &job, C_ERROR, now);
            }
            return; // the sweep reconnects for queued jobs
        }
        if (!(events & EPOLLOUT))
            return;
        c->state = CONN_OPEN;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - w->conns)};
        epoll_ctl (w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        s_conn_kick (w, c, now);
        return;
    }
    if (events & EPOLLOUT) {
        if (s_conn_flush (w, c) != 0) {
            s_conn_lost (w, c, now);
            return;
        }
        if (c->woff == c->wlen) {
            struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(c - w->conns)};
            epoll_ctl (w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        s_conn_readable (w, c, now);
}

//  Times out jobs past the limit: an in-flight one closes its connection (its answer
//  may still come, and would be mistaken for the next one's).
static void s_conn_sweep (worker_t *w, conn_t *c, uint64_t now)
{
    while (c->len > 0 && now - c->jobs[c->head].sched > s_opt.timeout_ns &&
           now > c->jobs[c->head].sched) {
        job_t job = c->jobs[c->head];
        if (c->busy)
            s_conn_close (w, c);
        s_conn_pop (c);
        s_finish (w, &job, C_TIMEOUT, now);
    }
    if (c->len > 0 && c->state == CONN_CLOSED)
        s_conn_kick (w, c, now);
    //  Closed loop: a request that timed out or failed is replaced.
    if (s_opt.closed && w->issuing && c->len == 0 && s_take_budget ()) {
        w->issued++;
        s_submit_http (w, c, (job_t){c->token, now}, now);
    }
}

//  --- native ---------------------------------------------------------------------------

//  Registers the session for EPOLLOUT while bytes wait to be written, and only then.
static void s_sess_want_out (sess_t *s)
{
    bool want = zmtp_pending (&s->zmtp);
    if (want == s->want_out)
        return;
    s->want_out = want;
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u64 = s->index};
    epoll_ctl (s->epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

static int s_sess_send (sess_t *s, Mc__Sdk__Frame *frame)
{
    uint8_t buf[2048];
    size_t len = mc__sdk__frame__get_packed_size (frame);
    if (len > sizeof buf)
        return -1;
    mc__sdk__frame__pack (frame, buf);
    if (s->sock)
        return zmq_send (s->sock, buf, len, ZMQ_DONTWAIT) == (int)len ? 0 : -1;
    if (zmtp_send (&s->zmtp, buf, len) != 0)
        return -1;
    s_sess_want_out (s);
    return 0;
}

static void s_sess_hello (sess_t *s)
{
    Mc__Sdk__Hello hello = MC__SDK__HELLO__INIT;
    hello.token = (char *)s_token (s->token);
    hello.sdk = "mc-load/1";
    hello.protocol = 1;
    hello.heartbeat_ms = 10000;
    Mc__Sdk__Frame frame = MC__SDK__FRAME__INIT;
    frame.id = 0;
    frame.body_case = MC__SDK__FRAME__BODY_HELLO;
    frame.hello = &hello;
    s_sess_send (s, &frame);
}

static void s_sess_drain (worker_t *w, sess_t *s, uint64_t now);

static void s_submit_native (worker_t *w, sess_t *s, job_t job, uint64_t now)
{
    w->inflight++;
    if (s->next_id - s->lo >= SLOT_CAP) {
        s_finish (w, &job, C_ERROR, now);
        return;
    }
    uint64_t id = s->next_id++;
    Mc__Sdk__Request request = MC__SDK__REQUEST__INIT;
    request.method = s_opt.method;
    request.path = s_opt.path;
    request.body.data = (uint8_t *)s_opt.body;
    request.body.len = s_opt.body ? strlen (s_opt.body) : 0;
    Mc__Sdk__Frame frame = MC__SDK__FRAME__INIT;
    frame.id = id;
    frame.body_case = MC__SDK__FRAME__BODY_REQUEST;
    frame.request = &request;
    if (s_opt.closed)
        job.sched = now;
    s->slots[id % SLOT_CAP] = job;
    s->ids[id % SLOT_CAP] = id;
    s->inflight++;
    if (s_sess_send (s, &frame) != 0) {
        s->slots[id % SLOT_CAP].sched = 0;
        s->inflight--;
        s_finish (w, &job, C_ERROR, now);
    }
    //  ZMQ_FD is edge-like: a send may consume the signal of a pending message (a plain
    //  socket is level-triggered in epoll: nothing to do).
    if (s->sock)
        s_sess_drain (w, s, now);
}

//  Ends the request with this id (if still outstanding) with counter.
static void s_sess_complete (worker_t *w, sess_t *s, uint64_t id, int counter, uint64_t now)
{
    if (id < s->lo || id >= s->next_id || s->ids[id % SLOT_CAP] != id ||
        s->slots[id % SLOT_CAP].sched == 0)
        return; // timed out already, or not ours
    job_t job = s->slots[id % SLOT_CAP];
    s->slots[id % SLOT_CAP].sched = 0;
    s->inflight--;
    while (s->lo < s->next_id && s->slots[s->lo % SLOT_CAP].sched == 0)
        s->lo++;
    if (job.sched >= w->measure_from && counter != C_ERROR)
        s->answered = true;
    s_finish (w, &job, counter, now);
    if (s_opt.closed && w->issuing && s_take_budget ()) {
        w->issued++;
        s_submit_native (w, s, (job_t){s->token, now}, now);
    }
}

static void s_sess_frame (worker_t *w, sess_t *s, Mc__Sdk__Frame *frame, uint64_t now)
{
    switch (frame->body_case) {
        case MC__SDK__FRAME__BODY_WELCOME:
        case MC__SDK__FRAME__BODY_HELLO: // echoed by zmq_echo
            s->welcomed = true;
            break;
        case MC__SDK__FRAME__BODY_RESPONSE:
            s_sess_complete (w, s, frame->id, s_status_counter ((int)frame->response->status), now);
            break;
        case MC__SDK__FRAME__BODY_REQUEST: // echoed by zmq_echo
            s_sess_complete (w, s, frame->id, C_2XX, now);
            break;
        case MC__SDK__FRAME__BODY_ERROR: {
            const char *code = frame->error->code ? frame->error->code : "";
            if (!s->welcomed && frame->id == 0)
                s->refused = true;
            else
                s_sess_complete (w, s, frame->id, strstr (code, "AUTH") ? C_401 : C_OTHER, now);
            break;
        }
        case MC__SDK__FRAME__BODY_PING: {
            Mc__Sdk__Pong pong = MC__SDK__PONG__INIT;
            Mc__Sdk__Frame reply = MC__SDK__FRAME__INIT;
            reply.id = frame->id;
            reply.body_case = MC__SDK__FRAME__BODY_PONG;
            reply.pong = &pong;
            s_sess_send (s, &reply);
            break;
        }
        case MC__SDK__FRAME__BODY_EVENT: { // not subscribed by mc-load, but be polite
            Mc__Sdk__Ack ack = MC__SDK__ACK__INIT;
            ack.ok = true;
            Mc__Sdk__Frame reply = MC__SDK__FRAME__INIT;
            reply.id = frame->id;
            reply.body_case = MC__SDK__FRAME__BODY_ACK;
            reply.ack = &ack;
            s_sess_send (s, &reply);
            break;
        }
        case MC__SDK__FRAME__BODY_ACK:
        case MC__SDK__FRAME__BODY_PONG:
        case MC__SDK__FRAME__BODY_INVOKE:
        case MC__SDK__FRAME__BODY_INVOKE_RESULT:
        case MC__SDK__FRAME__BODY_BYE:
        case MC__SDK__FRAME__BODY__NOT_SET:
        case _MC__SDK__FRAME__BODY__CASE_IS_INT_SIZE:
            break;
    }
}

//  What a ZMTP message callback needs.
typedef struct {
    worker_t *w;
    sess_t *s;
} sess_arg_t;

static void s_sess_message (void *arg, const uint8_t *data, size_t len)
{
    sess_arg_t *a = arg;
    Mc__Sdk__Frame *frame = mc__sdk__frame__unpack (NULL, len, data);
    if (frame) {
        s_sess_frame (a->w, a->s, frame, s_now ());
        mc__sdk__frame__free_unpacked (frame, NULL);
    }
}

//  Receives every frame waiting on the session's socket.
static void s_sess_drain (worker_t *w, sess_t *s, uint64_t now)
{
    if (s->draining)
        return; // the loop below picks the message up
    s->draining = true;
    if (!s->sock) {
        if (s->zmtp.fd >= 0) {
            sess_arg_t arg = {w, s};
            if (zmtp_read (&s->zmtp, s_sess_message, &arg) != 0 || zmtp_flush (&s->zmtp) < 0) {
                fprintf (stderr, "mc-load: a native session was closed by the server\n");
                epoll_ctl (s->epfd, EPOLL_CTL_DEL, s->fd, NULL);
                zmtp_close (&s->zmtp); // its outstanding requests time out
            } else
                s_sess_want_out (s);
        }
        s->draining = false;
        return;
    }
    for (;;) {
        uint32_t events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt (s->sock, ZMQ_EVENTS, &events, &size) != 0 || !(events & ZMQ_POLLIN))
            break;
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, s->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&msg);
            break;
        }
        now = s_now ();
        Mc__Sdk__Frame *frame =
            mc__sdk__frame__unpack (NULL, zmq_msg_size (&msg), zmq_msg_data (&msg));
        zmq_msg_close (&msg);
        if (frame) {
            s_sess_frame (w, s, frame, now);
            mc__sdk__frame__free_unpacked (frame, NULL);
        }
    }
    s->draining = false;
}

static void s_sess_sweep (worker_t *w, sess_t *s, uint64_t now)
{
    while (s->lo < s->next_id) {
        job_t *job = &s->slots[s->lo % SLOT_CAP];
        if (job->sched != 0) {
            if (now <= job->sched || now - job->sched <= s_opt.timeout_ns)
                break;
            job_t done = *job;
            job->sched = 0;
            s->inflight--;
            s_finish (w, &done, C_TIMEOUT, now);
        }
        s->lo++;
    }
    //  Closed loop: a request that timed out or failed is replaced.
    while (s_opt.closed && w->issuing && s->welcomed && s->inflight < s_opt.depth &&
           s_take_budget ()) {
        w->issued++;
        s_submit_native (w, s, (job_t){s->token, now}, now);
    }
}

//  --- one thread -----------------------------------------------------------------------

//  Issues the first requests of a closed-loop step.
static void s_closed_start (worker_t *w, uint64_t now)
{
    size_t depth = s_opt.native ? s_opt.depth : 1;
    for (size_t d = 0; d < depth; d++) {
        for (size_t i = 0; i < w->conn_count; i++)
            if (s_take_budget ()) {
                w->issued++;
                s_submit_http (w, &w->conns[i], (job_t){w->conns[i].token, now}, now);
            }
        for (size_t i = 0; i < w->sess_count; i++)
            if (w->sess[i].welcomed && s_take_budget ()) {
                w->issued++;
                s_submit_native (w, &w->sess[i], (job_t){w->sess[i].token, now}, now);
            }
    }
}

static void s_open_start (worker_t *w)
{
    w->heap_len = 0;
    //  The N schedules are phased evenly over one interval of the slowest rate, so
    //  the aggregate load is smooth rather than N requests at each tick.
    for (size_t i = 0; i < w->my_token_count; i++) {
        uint32_t token = w->my_tokens[i];
        double interval_ns = 1e9 / s_rate_of (token);
        uint64_t phase = (uint64_t)(interval_ns * (double)token / (double)s_opt.modules);
        s_heap_push (w, w->step_start + phase, token);
    }
}

//  The connection or session a token's requests go through.
static void s_issue (worker_t *w, uint32_t token, uint64_t due, uint64_t now)
{
    job_t job = {token, due};
    if (s_opt.native) {
        sess_t *s = &w->sess[(token / s_opt.threads) % w->sess_count];
        if (!s->welcomed) { // refused at HELLO (UNAUTHORIZED): that is a 401
            w->inflight++;
            s_finish (w, &job, s->refused ? C_401 : C_ERROR, now);
            return;
        }
        s_submit_native (w, s, job, now);
    } else {
        size_t conn = token % s_opt.connections; // global connection number
        s_submit_http (w, &w->conns[conn / s_opt.threads], job, now);
    }
}

static void s_run_step (worker_t *w)
{
    uint64_t duration = (uint64_t)(s_opt.duration_s * 1e9);
    uint64_t step_end = w->step_start + duration;
    uint64_t now = s_now ();
    w->issuing = true;
    if (s_opt.closed)
        s_closed_start (w, now);
    else
        s_open_start (w);
    uint64_t next_sweep = now + SWEEP_NS;
    unsigned sweeps = 0;
    uint64_t hard_end = step_end + s_opt.timeout_ns + 500000000ull;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        now = s_now ();
        if (w->issuing && (now >= step_end || s_interrupted))
            w->issuing = false;
        //  A closed loop whose --requests budget is spent ends with its last answer
        //  (it waited out --duration).
        if (w->issuing && s_opt.closed && s_opt.max_requests && atomic_load (&s_budget) == 0)
            w->issuing = false;
        if (w->issuing && !s_opt.closed) {
            while (w->heap_len && w->heap[0].due <= now) {
                heap_item_t item = s_heap_pop (w);
                if (!s_take_budget ()) {
                    w->issuing = false;
                    break;
                }
                uint64_t lag = now - item.due;
                if (lag > w->lag_max_ns && item.due >= w->measure_from)
                    w->lag_max_ns = lag;
                w->lag_sum_ns += (double)lag;
                w->issued++;
                s_issue (w, item.token, item.due, now);
                s_heap_push (w, item.due + (uint64_t)(1e9 / s_rate_of (item.token)), item.token);
            }
        }
        if (!w->issuing && w->inflight == 0)
            break;
        if (now >= hard_end)
            break; // answers that never come: counted below
        if (now >= next_sweep) {
            for (size_t i = 0; i < w->conn_count; i++)
                s_conn_sweep (w, &w->conns[i], now);
            //  Every drain asks libzmq for ZMQ_EVENTS, a poll() system call each: the
            //  epoll wake-ups and the drain after each send are what receive; this
            //  safety net runs every DRAIN_SWEEPS sweeps, not on each (with 500
            //  sessions that was 250k system calls a second of the client's own).
            bool drain = ++sweeps % DRAIN_SWEEPS == 0;
            for (size_t i = 0; i < w->sess_count; i++) {
                if (drain)
                    s_sess_drain (w, &w->sess[i], now);
                s_sess_sweep (w, &w->sess[i], now);
            }
            next_sweep = now + SWEEP_NS;
        }
        uint64_t wake = next_sweep;
        if (w->issuing && !s_opt.closed && w->heap_len && w->heap[0].due < wake)
            wake = w->heap[0].due;
        if (w->issuing && step_end < wake)
            wake = step_end;
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
        int n = epoll_pwait2 (w->epfd, events, MAX_EVENTS, &ts, NULL);
        now = s_now ();
        for (int i = 0; i < n; i++) {
            uint64_t id = events[i].data.u64;
            if (s_opt.native)
                s_sess_drain (w, &w->sess[id], now);
            else
                s_conn_event (w, &w->conns[id], events[i].events, now);
        }
    }
    //  Whatever is still outstanding after the grace period timed out.
    now = s_now ();
    for (size_t i = 0; i < w->conn_count; i++) {
        conn_t *c = &w->conns[i];
        while (c->len) {
            job_t job = c->jobs[c->head];
            s_conn_pop (c);
            s_finish (w, &job, C_TIMEOUT, now);
        }
        if (c->busy)
            s_conn_close (w, c);
    }
    for (size_t i = 0; i < w->sess_count; i++) {
        sess_t *s = &w->sess[i];
        for (; s->lo < s->next_id; s->lo++)
            if (s->slots[s->lo % SLOT_CAP].sched) {
                job_t job = s->slots[s->lo % SLOT_CAP];
                s->slots[s->lo % SLOT_CAP].sched = 0;
                s->inflight--;
                s_finish (w, &job, C_TIMEOUT, now);
            }
    }
}

static void s_reset_step (worker_t *w)
{
    hist_reset (&w->hist);
    memset (w->counts, 0, sizeof (uint64_t[C_COUNT]) * s_opt.modules);
    w->lag_max_ns = 0;
    w->lag_sum_ns = 0;
    w->issued = 0;
    w->last_finish = 0;
    for (size_t i = 0; i < w->conn_count; i++)
        w->conns[i].answered = false;
    for (size_t i = 0; i < w->sess_count; i++)
        w->sess[i].answered = false;
}

//  Native: HELLO on every session, wait for the WELCOMEs.
static void s_native_hello (worker_t *w)
{
    for (size_t i = 0; i < w->sess_count; i++)
        s_sess_hello (&w->sess[i]);
    uint64_t deadline = s_now () + HELLO_WAIT_S * 1000000000ull;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        size_t pending = 0;
        uint64_t now = s_now ();
        for (size_t i = 0; i < w->sess_count; i++) {
            s_sess_drain (w, &w->sess[i], now);
            pending += !w->sess[i].welcomed && !w->sess[i].refused;
        }
        if (pending == 0 || now >= deadline)
            break;
        epoll_wait (w->epfd, events, MAX_EVENTS, 10);
    }
    for (size_t i = 0; i < w->sess_count; i++)
        w->hello_failed += !w->sess[i].welcomed;
}

static void s_report_step (uint64_t measured_ns);

static void *s_worker_main (void *arg)
{
    worker_t *w = arg;
    if (s_opt.native)
        s_native_hello (w);
    for (size_t step = 0; step < s_opt.step_count; step++) {
        //  Thread 0 sets the common start time between the two barriers.
        pthread_barrier_wait (&s_barrier);
        if (w->index == 0) {
            s_step = step;
            s_step_start = s_now () + 20000000ull; // 20 ms from now, for every thread
        }
        pthread_barrier_wait (&s_barrier);
        w->step_start = s_step_start;
        w->measure_from =
            step == 0 && !s_opt.closed ? w->step_start + (uint64_t)(s_opt.warmup_s * 1e9) : 0;
        s_reset_step (w);
        struct timespec start = {(time_t)(w->step_start / 1000000000ull),
                                 (long)(w->step_start % 1000000000ull)};
        while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &start, NULL) == EINTR)
            ;
        s_run_step (w);
        pthread_barrier_wait (&s_barrier);
        if (w->index == 0) {
            uint64_t from = w->measure_from > w->step_start ? w->measure_from : w->step_start;
            uint64_t measured = (uint64_t)(s_opt.duration_s * 1e9) - (from - w->step_start);
            //  A --requests budget that ran out early: the step lasted until its last answer.
            uint64_t last = 0;
            for (size_t t = 0; t < s_opt.threads; t++)
                if (s_workers[t].last_finish > last)
                    last = s_workers[t].last_finish;
            if (s_opt.max_requests && atomic_load (&s_budget) == 0 && last > from &&
                last - from < measured)
                measured = last - from;
            s_report_step (measured);
        }
        if (s_interrupted)
            break;
    }
    return NULL;
}

//  --- results --------------------------------------------------------------------------

static FILE *s_open_append (const char *path, const char *header)
{
    FILE *f = fopen (path, "a");
    if (!f) {
        fprintf (stderr, "mc-load: cannot write %s: %s\n", path, strerror (errno));
        return NULL;
    }
    if (ftell (f) == 0)
        fputs (header, f);
    return f;
}

static void s_report_step (uint64_t measured_ns)
{
    static hist_t hist; // 136 KiB: not on the stack
    hist_reset (&hist);
    uint64_t total[C_COUNT] = {0};
    uint64_t fast_ok = 0, normal_429 = 0, issued = 0, reconnects = 0, hello_failed = 0;
    double fast_min = 1e18, fast_max = 0;
    uint64_t lag_max = 0;
    double lag_sum = 0;
    size_t answered = 0, channels = 0;
    uint64_t (*per_token)[C_COUNT] = calloc (s_opt.modules, sizeof *per_token);
    for (size_t t = 0; t < s_opt.threads; t++) {
        worker_t *w = &s_workers[t];
        hist_merge (&hist, &w->hist);
        for (size_t k = 0; k < s_opt.modules; k++)
            for (int c = 0; c < C_COUNT; c++)
                per_token[k][c] += w->counts[k][c];
        issued += w->issued;
        reconnects += w->reconnects;
        hello_failed += w->hello_failed;
        lag_sum += w->lag_sum_ns;
        if (w->lag_max_ns > lag_max)
            lag_max = w->lag_max_ns;
        for (size_t i = 0; i < w->conn_count; i++)
            answered += w->conns[i].answered;
        for (size_t i = 0; i < w->sess_count; i++)
            answered += w->sess[i].answered;
        channels += w->conn_count + w->sess_count;
    }
    double secs = (double)measured_ns / 1e9;
    for (size_t k = 0; k < s_opt.modules; k++) {
        uint64_t sent = 0;
        for (int c = C_2XX; c < C_COUNT; c++)
            sent += per_token[k][c];
        per_token[k][C_SENT] = sent;
        for (int c = 0; c < C_COUNT; c++)
            total[c] += per_token[k][c];
        if (k < s_opt.fast_count) {
            fast_ok += per_token[k][C_2XX];
            double rate = (double)per_token[k][C_2XX] / secs;
            if (rate < fast_min)
                fast_min = rate;
            if (rate > fast_max)
                fast_max = rate;
        } else
            normal_429 += per_token[k][C_429];
    }
    if (s_opt.fast_count == 0)
        fast_min = fast_max = 0;
    uint64_t answered_requests =
        total[C_2XX] + total[C_401] + total[C_403] + total[C_429] + total[C_5XX] + total[C_OTHER];
    double offered = s_opt.closed
                         ? 0
                         : (double)(s_opt.modules - s_opt.fast_count) * s_opt.rates[s_step] +
                               (double)s_opt.fast_count * s_opt.fast_rate;
    double throughput = (double)answered_requests / secs;
    double ok_rate = (double)total[C_2XX] / secs;
    double fast_avg = s_opt.fast_count ? (double)fast_ok / secs / (double)s_opt.fast_count : 0;
    uint64_t p50 = hist_percentile (&hist, 50), p90 = hist_percentile (&hist, 90),
             p99 = hist_percentile (&hist, 99), p999 = hist_percentile (&hist, 99.9),
             pmax = hist_percentile (&hist, 100);
    double lag_mean_us = issued ? lag_sum / (double)issued / 1000.0 : 0;
    const char *transport = s_opt.native ? "native" : "http";
    if (!s_opt.quiet) {
        printf ("mc-load %s step %zu: %s %s, %zu modules, %s, %.1f s measured\n", s_opt.label,
                s_step + 1, transport, s_opt.native ? s_opt.endpoint : s_opt.path, s_opt.modules,
                s_opt.closed ? "closed loop" : "open loop", secs);
        if (s_opt.closed)
            printf ("  closed loop: %zu %s x depth %zu\n", s_opt.closed,
                    s_opt.native ? "sockets" : "connections", s_opt.native ? s_opt.depth : 1);
        else
            printf ("  offered   %.0f req/s (%.1f per token%s)\n", offered, s_opt.rates[s_step],
                    s_opt.fast_count ? ", some tokens faster" : "");
        printf ("  answered  %.0f req/s (2xx %.0f req/s)\n", throughput, ok_rate);
        printf ("  latency   p50 %llu us  p90 %llu us  p99 %llu us  p99.9 %llu us  max %llu us\n",
                (unsigned long long)p50, (unsigned long long)p90, (unsigned long long)p99,
                (unsigned long long)p999, (unsigned long long)pmax);
        printf ("  counts   ");
        for (int c = 0; c < C_COUNT; c++)
            printf (" %s %llu", s_counter_names[c], (unsigned long long)total[c]);
        printf ("\n  %s answered %zu of %zu; connects %llu; client lag mean %.0f us max %.0f "
                "us\n",
                s_opt.native ? "sessions" : "connections", answered, channels,
                (unsigned long long)reconnects, lag_mean_us, (double)lag_max / 1000.0);
        if (s_opt.native && hello_failed)
            printf ("  sessions without WELCOME: %llu\n", (unsigned long long)hello_failed);
        if (s_opt.fast_count)
            printf ("  %zu tokens offered %.0f req/s: accepted %.2f req/s each (min %.2f, max "
                    "%.2f); 429 to the others: %llu\n",
                    s_opt.fast_count, s_opt.fast_rate, fast_avg, fast_min, fast_max,
                    (unsigned long long)normal_429);
        fflush (stdout);
    }
    if (s_opt.csv_path) {
        FILE *f = s_open_append (
            s_opt.csv_path,
            "label,transport,mode,modules,rate_per_token,connections,duration_s,offered_rps,"
            "sent,answered,throughput_rps,ok_rps,ok_2xx,s401,s403,s429,s5xx,other,timeouts,"
            "errors,p50_us,p90_us,p99_us,p999_us,max_us,mean_us,answered_conns,conns,"
            "fast_tokens,fast_rate,fast_accepted_rps,fast_min_rps,fast_max_rps,false_429,"
            "lag_mean_us,lag_max_us,hello_failed\n");
        if (f) {
            fprintf (f,
                     "%s,%s,%s,%zu,%.2f,%zu,%.3f,%.1f,%llu,%llu,%.1f,%.1f,%llu,%llu,%llu,%llu,"
                     "%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.1f,%zu,%zu,%zu,%.1f,%.3f,"
                     "%.3f,%.3f,%llu,%.1f,%.1f,%llu\n",
                     s_opt.label, transport, s_opt.closed ? "closed" : "open", s_opt.modules,
                     s_opt.closed ? 0.0 : s_opt.rates[s_step], channels, secs, offered,
                     (unsigned long long)total[C_SENT], (unsigned long long)answered_requests,
                     throughput, ok_rate, (unsigned long long)total[C_2XX],
                     (unsigned long long)total[C_401], (unsigned long long)total[C_403],
                     (unsigned long long)total[C_429], (unsigned long long)total[C_5XX],
                     (unsigned long long)total[C_OTHER], (unsigned long long)total[C_TIMEOUT],
                     (unsigned long long)total[C_ERROR], (unsigned long long)p50,
                     (unsigned long long)p90, (unsigned long long)p99, (unsigned long long)p999,
                     (unsigned long long)pmax, hist_mean (&hist), answered, channels,
                     s_opt.fast_count, s_opt.fast_rate, fast_avg, fast_min, fast_max,
                     (unsigned long long)normal_429, lag_mean_us, (double)lag_max / 1000.0,
                     (unsigned long long)hello_failed);
            fclose (f);
        }
    }
    if (s_opt.series) {
        FILE *f = s_open_append (s_opt.series,
                                 "# label offered_rps throughput_rps p50_us p90_us p99_us p999_us "
                                 "max_us timeouts\n");
        if (f) {
            fprintf (f, "%s %.1f %.1f %llu %llu %llu %llu %llu %llu\n", s_opt.label, offered,
                     throughput, (unsigned long long)p50, (unsigned long long)p90,
                     (unsigned long long)p99, (unsigned long long)p999, (unsigned long long)pmax,
                     (unsigned long long)total[C_TIMEOUT]);
            fclose (f);
        }
    }
    if (s_opt.per_token) {
        FILE *f = fopen (s_opt.per_token, "w");
        if (f) {
            fprintf (f, "token");
            for (int c = 0; c < C_COUNT; c++)
                fprintf (f, ",%s", s_counter_names[c]);
            fprintf (f, ",offered_rps\n");
            for (size_t k = 0; k < s_opt.modules; k++) {
                fprintf (f, "%zu", k);
                for (int c = 0; c < C_COUNT; c++)
                    fprintf (f, ",%llu", (unsigned long long)per_token[k][c]);
                fprintf (f, ",%.1f\n", s_opt.closed ? 0.0 : s_rate_of ((uint32_t)k));
            }
            fclose (f);
        }
    }
    free (per_token);
}

//  --- set-up ---------------------------------------------------------------------------

static void s_usage (FILE *out)
{
    fprintf (out, "usage: mc-load [options]\n"
                  "  --transport http|native   (default http)\n"
                  "  --libzmq                  native: libzmq DEALERs (default: ZMTP spoken\n"
                  "                            directly on plain sockets, see bench/zmtp.h)\n"
                  "  --url http://127.0.0.1:PORT/PATH      HTTP target\n"
                  "  --endpoint ipc://...|tcp://...        native target (path from --path)\n"
                  "  --path PATH               native: path below /api/v1 (default /devices)\n"
                  "  --method M --body JSON    request method (GET) and body\n"
                  "  --tokens FILE             one token per line; --token T for one token;\n"
                  "  --no-auth                 no Authorization header (baselines)\n"
                  "  --modules N               tokens played (default: as many as given)\n"
                  "  --rate R | --rates R1,R2  per-token req/s, open loop (one step per rate)\n"
                  "  --fast K:R                the first K tokens are offered R req/s instead\n"
                  "  --connections C           HTTP connections, tokens round-robin (default N)\n"
                  "  --closed K [--depth D]    closed loop: K connections/sockets (D in flight)\n"
                  "  --duration S              seconds per step (default 10)\n"
                  "  --warmup S                first seconds of step 1 not recorded (open loop)\n"
                  "  --requests N              total bound on requests (default none)\n"
                  "  --timeout-ms T            per request (default 2000)\n"
                  "  --threads T               client threads (default 1)\n"
                  "  --label L --csv FILE --series FILE --per-token FILE --quiet\n");
}

static void s_parse_rates (const char *text)
{
    s_opt.step_count = 0;
    free (s_opt.rates);
    s_opt.rates = calloc (64, sizeof (double));
    char *copy = strdup (text), *save = NULL;
    for (char *part = strtok_r (copy, ",", &save); part && s_opt.step_count < 64;
         part = strtok_r (NULL, ",", &save))
        s_opt.rates[s_opt.step_count++] = atof (part);
    free (copy);
}

static int s_load_tokens (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f) {
        fprintf (stderr, "mc-load: cannot read %s: %s\n", path, strerror (errno));
        return -1;
    }
    char line[512];
    size_t cap = 0;
    while (fgets (line, sizeof line, f)) {
        line[strcspn (line, "\r\n \t")] = 0;
        if (!*line)
            continue;
        if (s_opt.token_count == cap) {
            cap = cap ? cap * 2 : 256;
            s_opt.tokens = realloc (s_opt.tokens, cap * sizeof *s_opt.tokens);
        }
        s_opt.tokens[s_opt.token_count++] = strdup (line);
    }
    fclose (f);
    return 0;
}

static int s_parse_url (const char *url)
{
    if (strncmp (url, "http://", 7) != 0)
        return -1;
    const char *hp = url + 7;
    const char *slash = strchr (hp, '/');
    const char *colon = strchr (hp, ':');
    if (!colon || (slash && colon > slash))
        return -1;
    snprintf (s_opt.host, sizeof s_opt.host, "%.*s", (int)(colon - hp), hp);
    s_opt.port = atoi (colon + 1);
    snprintf (s_opt.path, sizeof s_opt.path, "%s", slash ? slash : "/");
    if (strcmp (s_opt.host, "localhost") == 0)
        snprintf (s_opt.host, sizeof s_opt.host, "127.0.0.1");
    struct in_addr addr;
    return inet_pton (AF_INET, s_opt.host, &addr) == 1 && s_opt.port > 0 ? 0 : -1;
}

static void s_build_requests (void)
{
    s_requests = calloc (s_opt.modules, sizeof *s_requests);
    s_request_lens = calloc (s_opt.modules, sizeof *s_request_lens);
    for (size_t k = 0; k < s_opt.modules; k++) {
        char auth[600] = "";
        if (!s_opt.no_auth)
            snprintf (auth, sizeof auth, "Authorization: Bearer %s\r\n", s_token ((uint32_t)k));
        char body_headers[128] = "";
        size_t body_len = s_opt.body ? strlen (s_opt.body) : 0;
        if (s_opt.body)
            snprintf (body_headers, sizeof body_headers,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
        int n = asprintf (&s_requests[k], "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%s\r\n%s",
                          s_opt.method, s_opt.path, s_opt.host, s_opt.port, auth, body_headers,
                          s_opt.body ? s_opt.body : "");
        if (n < 0)
            abort ();
        s_request_lens[k] = (size_t)n;
    }
}

static void s_on_signal (int sig)
{
    s_interrupted = 1;
}

int main (int argc, char **argv)
{
    static const struct option options[] = {
        {"transport", required_argument, NULL, 'T'},
        {"libzmq", no_argument, NULL, 'Z'},
        {"url", required_argument, NULL, 'u'},
        {"endpoint", required_argument, NULL, 'e'},
        {"path", required_argument, NULL, 'p'},
        {"method", required_argument, NULL, 'm'},
        {"body", required_argument, NULL, 'b'},
        {"tokens", required_argument, NULL, 'k'},
        {"token", required_argument, NULL, 'K'},
        {"no-auth", no_argument, NULL, 'A'},
        {"modules", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"rates", required_argument, NULL, 'r'},
        {"fast", required_argument, NULL, 'f'},
        {"connections", required_argument, NULL, 'c'},
        {"closed", required_argument, NULL, 'C'},
        {"depth", required_argument, NULL, 'D'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"requests", required_argument, NULL, 'N'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"threads", required_argument, NULL, 'j'},
        {"label", required_argument, NULL, 'l'},
        {"csv", required_argument, NULL, 'o'},
        {"series", required_argument, NULL, 's'},
        {"per-token", required_argument, NULL, 'P'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    snprintf (s_opt.method, sizeof s_opt.method, "GET");
    snprintf (s_opt.path, sizeof s_opt.path, "/devices");
    s_opt.duration_s = 10;
    s_opt.timeout_ns = 2000000000ull;
    s_opt.threads = 1;
    s_opt.depth = 1;
    s_opt.label = "run";
    s_parse_rates ("100");
    const char *url = NULL;
    int opt;
    while ((opt = getopt_long (argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
            case 'Z':
                s_opt.libzmq = true;
                break;
            case 'T':
                s_opt.native = strcmp (optarg, "native") == 0;
                if (!s_opt.native && strcmp (optarg, "http") != 0) {
                    fprintf (stderr, "mc-load: --transport http or native\n");
                    return 2;
                }
                break;
            case 'u':
                url = optarg;
                break;
            case 'e':
                snprintf (s_opt.endpoint, sizeof s_opt.endpoint, "%s", optarg);
                break;
            case 'p':
                snprintf (s_opt.path, sizeof s_opt.path, "%s", optarg);
                break;
            case 'm':
                snprintf (s_opt.method, sizeof s_opt.method, "%s", optarg);
                break;
            case 'b':
                s_opt.body = optarg;
                break;
            case 'k':
                if (s_load_tokens (optarg) != 0)
                    return 2;
                break;
            case 'K':
                s_opt.tokens = realloc (s_opt.tokens, (s_opt.token_count + 1) * sizeof (char *));
                s_opt.tokens[s_opt.token_count++] = strdup (optarg);
                break;
            case 'A':
                s_opt.no_auth = true;
                break;
            case 'n':
                s_opt.modules = strtoul (optarg, NULL, 10);
                break;
            case 'r':
                s_parse_rates (optarg);
                break;
            case 'f': {
                char *colon = strchr (optarg, ':');
                if (!colon) {
                    fprintf (stderr, "mc-load: --fast K:RATE\n");
                    return 2;
                }
                s_opt.fast_count = strtoul (optarg, NULL, 10);
                s_opt.fast_rate = atof (colon + 1);
                break;
            }
            case 'c':
                s_opt.connections = strtoul (optarg, NULL, 10);
                break;
            case 'C':
                s_opt.closed = strtoul (optarg, NULL, 10);
                break;
            case 'D':
                s_opt.depth = strtoul (optarg, NULL, 10);
                break;
            case 'd':
                s_opt.duration_s = atof (optarg);
                break;
            case 'w':
                s_opt.warmup_s = atof (optarg);
                break;
            case 'N':
                s_opt.max_requests = strtoull (optarg, NULL, 10);
                break;
            case 't':
                s_opt.timeout_ns = strtoull (optarg, NULL, 10) * 1000000ull;
                break;
            case 'j':
                s_opt.threads = strtoul (optarg, NULL, 10);
                break;
            case 'l':
                s_opt.label = optarg;
                break;
            case 'o':
                s_opt.csv_path = optarg;
                break;
            case 's':
                s_opt.series = optarg;
                break;
            case 'P':
                s_opt.per_token = optarg;
                break;
            case 'q':
                s_opt.quiet = true;
                break;
            case 'h':
                s_usage (stdout);
                return 0;
            default:
                s_usage (stderr);
                return 2;
        }
    }
    if (s_opt.no_auth && s_opt.token_count == 0) {
        s_opt.tokens = calloc (1, sizeof (char *));
        s_opt.tokens[s_opt.token_count++] = strdup ("-");
    }
    if (s_opt.token_count == 0) {
        fprintf (stderr, "mc-load: no tokens (--tokens FILE, --token T, or --no-auth)\n");
        return 2;
    }
    if (s_opt.native && !*s_opt.endpoint) {
        fprintf (stderr, "mc-load: --transport native needs --endpoint\n");
        return 2;
    }
    if (!s_opt.native && (!url || s_parse_url (url) != 0)) {
        fprintf (stderr, "mc-load: --url http://IPV4:PORT/PATH is needed for HTTP\n");
        return 2;
    }
    if (s_opt.modules == 0)
        s_opt.modules = s_opt.token_count;
    if (s_opt.closed && s_opt.modules > s_opt.closed)
        s_opt.modules = s_opt.closed; // one token per connection/socket at most
    if (s_opt.fast_count > s_opt.modules)
        s_opt.fast_count = s_opt.modules;
    if (s_opt.connections == 0 || s_opt.connections > s_opt.modules)
        s_opt.connections = s_opt.modules;
    size_t channels =
        s_opt.closed ? s_opt.closed : (s_opt.native ? s_opt.modules : s_opt.connections);
    if (s_opt.threads < 1)
        s_opt.threads = 1;
    if (s_opt.threads > channels)
        s_opt.threads = channels;
    if (s_opt.duration_s <= 0 || s_opt.step_count == 0 || s_opt.depth < 1 ||
        s_opt.depth > SLOT_CAP / 2) {
        fprintf (stderr, "mc-load: bad --duration, --rates or --depth\n");
        return 2;
    }
    if (s_opt.max_requests)
        atomic_store (&s_budget, s_opt.max_requests);
    signal (SIGPIPE, SIG_IGN);
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);

    if (!s_opt.native)
        s_build_requests ();
    else {
        if (s_opt.libzmq) {
            s_zmq = zmq_ctx_new ();
            zmq_ctx_set (s_zmq, ZMQ_MAX_SOCKETS, (int)channels + 64);
            zmq_ctx_set (s_zmq, ZMQ_IO_THREADS, 1);
        }
    }

    s_workers = calloc (s_opt.threads, sizeof *s_workers);
    for (size_t t = 0; t < s_opt.threads; t++) {
        worker_t *w = &s_workers[t];
        w->index = t;
        w->epfd = epoll_create1 (EPOLL_CLOEXEC);
        w->counts = calloc (s_opt.modules, sizeof *w->counts);
        hist_reset (&w->hist);
        //  Channel j (connection or session) belongs to thread j % T, slot j / T.
        size_t mine = channels / s_opt.threads + (t < channels % s_opt.threads);
        if (s_opt.native) {
            w->sess = calloc (mine, sizeof *w->sess);
            w->sess_count = mine;
            for (size_t i = 0; i < mine; i++) {
                sess_t *s = &w->sess[i];
                size_t global = i * s_opt.threads + t;
                s->token = (uint32_t)(global % s_opt.modules);
                s->next_id = s->lo = 1;
                s->epfd = w->epfd;
                s->index = (uint32_t)i;
                if (!s_opt.libzmq) {
                    if (zmtp_connect (&s->zmtp, s_opt.endpoint) != 0) {
                        fprintf (stderr, "mc-load: cannot connect %s: %s\n", s_opt.endpoint,
                                 strerror (errno));
                        return 1;
                    }
                    s->fd = s->zmtp.fd;
                    s->want_out = false; // registered for EPOLLIN below; EPOLLOUT if needed
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
                    epoll_ctl (w->epfd, EPOLL_CTL_ADD, s->fd, &ev);
                    s_sess_want_out (s);
                    continue;
                }
                s->sock = zmq_socket (s_zmq, ZMQ_DEALER);
                int zero = 0, hwm = 100000;
                zmq_setsockopt (s->sock, ZMQ_LINGER, &zero, sizeof zero);
                zmq_setsockopt (s->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
                zmq_setsockopt (s->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
                if (zmq_connect (s->sock, s_opt.endpoint) != 0) {
                    fprintf (stderr, "mc-load: cannot connect %s: %s\n", s_opt.endpoint,
                             zmq_strerror (zmq_errno ()));
                    return 1;
                }
                size_t size = sizeof s->fd;
                zmq_getsockopt (s->sock, ZMQ_FD, &s->fd, &size);
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = i};
                epoll_ctl (w->epfd, EPOLL_CTL_ADD, s->fd, &ev);
            }
        } else {
            w->conns = calloc (mine, sizeof *w->conns);
            w->conn_count = mine;
            for (size_t i = 0; i < mine; i++) {
                w->conns[i].fd = -1;
                w->conns[i].rbuf = malloc (RBUF_SIZE);
                w->conns[i].token = (uint32_t)((i * s_opt.threads + t) % s_opt.modules);
            }
        }
        //  Open loop: token k is scheduled by the thread owning its channel.
        w->my_tokens = calloc (s_opt.modules, sizeof *w->my_tokens);
        w->heap = calloc (s_opt.modules, sizeof *w->heap);
        for (size_t k = 0; k < s_opt.modules && !s_opt.closed; k++) {
            size_t channel = s_opt.native ? k : k % s_opt.connections;
            if (channel % s_opt.threads == t)
                w->my_tokens[w->my_token_count++] = (uint32_t)k;
        }
    }
    //  Native open loop: token k's session is channel k: thread k % T, slot k / T.
    pthread_barrier_init (&s_barrier, NULL, (unsigned)s_opt.threads);
    for (size_t t = 1; t < s_opt.threads; t++)
        pthread_create (&s_workers[t].thread, NULL, s_worker_main, &s_workers[t]);
    s_worker_main (&s_workers[0]);
    for (size_t t = 1; t < s_opt.threads; t++)
        pthread_join (s_workers[t].thread, NULL);

    for (size_t t = 0; t < s_opt.threads; t++) {
        worker_t *w = &s_workers[t];
        for (size_t i = 0; i < w->conn_count; i++) {
            if (w->conns[i].fd >= 0)
                close (w->conns[i].fd);
            free (w->conns[i].rbuf);
        }
        for (size_t i = 0; i < w->sess_count; i++) {
            if (w->sess[i].sock)
                zmq_close (w->sess[i].sock);
            zmtp_close (&w->sess[i].zmtp);
        }
        free (w->conns);
        free (w->sess);
        free (w->counts);
        free (w->my_tokens);
        free (w->heap);
        close (w->epfd);
    }
    if (s_zmq)
        zmq_ctx_term (s_zmq);
    return 0;
}
