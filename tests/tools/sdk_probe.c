/*  sdk_probe: a minimal native-transport client for the integration tests. It speaks
    docs/sdk-protocol.md directly (czmq + the generated sdk.pb-c), prints results as JSON
    lines, and exits 0 when the scenario ran (its checks are made by the test).

    usage: sdk_probe ENDPOINT TOKEN hello        (env MC_SDK_SERVERKEY: CURVE, tcp://)
           sdk_probe ENDPOINT TOKEN request METHOD PATH [BODY]
           sdk_probe ENDPOINT TOKEN burst N METHOD PATH
           sdk_probe ENDPOINT TOKEN listen PATTERN COUNT SECONDS [nack-first]
           sdk_probe ENDPOINT TOKEN serve-cli SECONDS */
#include <czmq.h>
#include <stdio.h>
#include <string.h>

#include "sdk.pb-c.h"

typedef Mc__Sdk__Frame frame_t;

static uint64_t s_next_id = 1;

static void s_send (zsock_t *sock, frame_t *frame)
{
    size_t len = mc__sdk__frame__get_packed_size (frame);
    zframe_t *data = zframe_new (NULL, len);
    mc__sdk__frame__pack (frame, zframe_data (data));
    zframe_send (&data, sock, 0);
}

static frame_t *s_recv (zsock_t *sock, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    void *which = zpoller_wait (poller, timeout_ms);
    zpoller_destroy (&poller);
    if (!which)
        return NULL;
    zframe_t *data = zframe_recv (sock);
    frame_t *frame =
        data ? mc__sdk__frame__unpack (NULL, zframe_size (data), zframe_data (data)) : NULL;
    zframe_destroy (&data);
    return frame;
}

//  HELLO; returns true on WELCOME. Prints the outcome.
static bool s_hello (zsock_t *sock, const char *token, bool print)
{
    Mc__Sdk__Hello hello = MC__SDK__HELLO__INIT;
    hello.token = (char *)token;
    hello.sdk = "sdk_probe/1";
    hello.protocol = 1;
    hello.heartbeat_ms = 2000;
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = s_next_id++;
    frame.body_case = MC__SDK__FRAME__BODY_HELLO;
    frame.hello = &hello;
    s_send (sock, &frame);
    frame_t *reply = s_recv (sock, 5000);
    bool ok = reply && reply->body_case == MC__SDK__FRAME__BODY_WELCOME;
    if (print) {
        if (ok)
            printf ("{\"welcome\":\"%s\",\"heartbeat_ms\":%u}\n", reply->welcome->module,
                    reply->welcome->heartbeat_ms);
        else if (reply && reply->body_case == MC__SDK__FRAME__BODY_ERROR)
            printf ("{\"error\":\"%s\"}\n", reply->error->code);
        else
            printf ("{\"error\":\"NO_ANSWER\"}\n");
    }
    if (reply)
        mc__sdk__frame__free_unpacked (reply, NULL);
    return ok;
}

static void s_request (zsock_t *sock, const char *method, const char *path, const char *body)
{
    Mc__Sdk__Request request = MC__SDK__REQUEST__INIT;
    request.method = (char *)method;
    request.path = (char *)path;
    request.body.data = (uint8_t *)body;
    request.body.len = body ? strlen (body) : 0;
    frame_t frame = MC__SDK__FRAME__INIT;
    frame.id = s_next_id++;
    frame.body_case = MC__SDK__FRAME__BODY_REQUEST;
    frame.request = &request;
    s_send (sock, &frame);
}

//  Waits for the RESPONSE to id, answering PINGs meanwhile.
static frame_t *s_response (zsock_t *sock, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        frame_t *frame = s_recv (sock, (int)(deadline - zclock_mono ()));
        if (!frame)
            return NULL;
        if (frame->body_case == MC__SDK__FRAME__BODY_RESPONSE)
            return frame;
        if (frame->body_case == MC__SDK__FRAME__BODY_PING) {
            Mc__Sdk__Pong pong = MC__SDK__PONG__INIT;
            frame_t reply = MC__SDK__FRAME__INIT;
            reply.id = frame->id;
            reply.body_case = MC__SDK__FRAME__BODY_PONG;
            reply.pong = &pong;
            s_send (sock, &reply);
        }
        mc__sdk__frame__free_unpacked (frame, NULL);
    }
    return NULL;
}

int main (int argc, char **argv)
{
    if (argc < 4) {
        fprintf (stderr, "usage: sdk_probe ENDPOINT TOKEN SCENARIO ...\n");
        return 2;
    }
    zsys_init ();
    //  A tcp:// endpoint with CURVE: the core's public key (Z85, <data>/run/sdk.pub) comes
    //  in MC_SDK_SERVERKEY; this client makes up its own key pair.
    const char *server_key = getenv ("MC_SDK_SERVERKEY");
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    zcert_t *cert = NULL;
    if (server_key && *server_key) {
        cert = zcert_new ();
        zcert_apply (cert, sock);
        zsock_set_curve_serverkey (sock, server_key);
    }
    if (sock && zsock_connect (sock, "%s", argv[1]) != 0)
        zsock_destroy (&sock);
    if (!sock) {
        fprintf (stderr, "sdk_probe: cannot connect %s\n", argv[1]);
        return 2;
    }
    const char *token = argv[2], *scenario = argv[3];
    int rc = 0;
    if (streq (scenario, "hello"))
        s_hello (sock, token, true);
    else if (streq (scenario, "noauth")) {
        s_request (sock, "GET", "/modules/self", NULL);
        frame_t *reply = s_recv (sock, 5000);
        printf ("{\"error\":\"%s\"}\n", reply && reply->body_case == MC__SDK__FRAME__BODY_ERROR
                                            ? reply->error->code
                                            : "NONE");
    } else if (!s_hello (sock, token, false)) {
        printf ("{\"error\":\"HELLO_REFUSED\"}\n");
        rc = 1;
    } else if (streq (scenario, "request") && argc >= 6) {
        s_request (sock, argv[4], argv[5], argc > 6 ? argv[6] : NULL);
        frame_t *reply = s_response (sock, 10000);
        if (reply)
            printf ("{\"status\":%u,\"retry_after\":%u,\"body\":%.*s}\n", reply->response->status,
                    reply->response->retry_after_s, (int)reply->response->body.len,
                    reply->response->body.len ? (char *)reply->response->body.data : "null");
        else
            printf ("{\"status\":0}\n");
        if (reply)
            mc__sdk__frame__free_unpacked (reply, NULL);
    } else if (streq (scenario, "burst") && argc >= 7) {
        int n = atoi (argv[4]);
        int64_t start = zclock_mono ();
        for (int i = 0; i < n; i++)
            s_request (sock, argv[5], argv[6], NULL);
        int counts[600] = {0}, got = 0;
        unsigned retry_after_min = 0;
        while (got < n) {
            frame_t *reply = s_response (sock, 10000);
            if (!reply)
                break;
            if (reply->response->status < 600)
                counts[reply->response->status]++;
            if (reply->response->status == 503 &&
                (!retry_after_min || reply->response->retry_after_s < retry_after_min))
                retry_after_min = reply->response->retry_after_s;
            got++;
            mc__sdk__frame__free_unpacked (reply, NULL);
        }
        printf ("{\"answered\":%d,\"ok\":%d,\"limited\":%d,\"overloaded\":%d,"
                "\"retry_after_min\":%u,\"elapsed_ms\":%lld}\n",
                got, counts[200], counts[429], counts[503], retry_after_min,
                (long long)(zclock_mono () - start));
    } else if (streq (scenario, "listen") && argc >= 7) {
        char body[256];
        snprintf (body, sizeof body, "{\"event_types\":[\"%s\"],\"webhook_url\":\"native:\"}",
                  argv[4]);
        s_request (sock, "POST", "/events/subscribe", body);
        frame_t *sub = s_response (sock, 10000);
        printf ("{\"subscribed\":%u}\n", sub ? sub->response->status : 0);
        if (sub)
            mc__sdk__frame__free_unpacked (sub, NULL);
        fflush (stdout);
        int want = atoi (argv[5]), got = 0;
        bool nack_first = argc > 7 && streq (argv[7], "nack-first"), nacked = false;
        int64_t deadline = zclock_mono () + 1000LL * atoi (argv[6]);
        while (got < want && zclock_mono () < deadline) {
            frame_t *frame = s_recv (sock, 200);
            if (!frame)
                continue;
            frame_t reply = MC__SDK__FRAME__INIT;
            reply.id = frame->id;
            Mc__Sdk__Ack ack = MC__SDK__ACK__INIT;
            Mc__Sdk__Pong pong = MC__SDK__PONG__INIT;
            if (frame->body_case == MC__SDK__FRAME__BODY_EVENT) {
                ack.ok = !(nack_first && !nacked);
                if (ack.ok) {
                    printf ("{\"event\":%.*s,\"attempt\":%u}\n", (int)frame->event->json.len,
                            (char *)frame->event->json.data, frame->event->attempt);
                    fflush (stdout);
                    got++;
                }
                nacked = true;
                reply.body_case = MC__SDK__FRAME__BODY_ACK;
                reply.ack = &ack;
                s_send (sock, &reply);
            } else if (frame->body_case == MC__SDK__FRAME__BODY_PING) {
                reply.body_case = MC__SDK__FRAME__BODY_PONG;
                reply.pong = &pong;
                s_send (sock, &reply);
            }
            mc__sdk__frame__free_unpacked (frame, NULL);
        }
        printf ("{\"received\":%d}\n", got);
    } else if (streq (scenario, "serve-cli") && argc >= 5) {
        s_request (sock, "POST", "/cli/spec",
                   "{\"about\":\"probe\",\"subcommands\":[{\"name\":\"echo\",\"args\":[{\"name\":"
                   "\"text\",\"takes_value\":true,\"required\":true}]}]}");
        frame_t *spec = s_response (sock, 10000);
        printf ("{\"registered\":%u}\n", spec ? spec->response->status : 0);
        if (spec)
            mc__sdk__frame__free_unpacked (spec, NULL);
        fflush (stdout);
        int64_t deadline = zclock_mono () + 1000LL * atoi (argv[4]);
        while (zclock_mono () < deadline) {
            frame_t *frame = s_recv (sock, 200);
            if (!frame)
                continue;
            frame_t reply = MC__SDK__FRAME__INIT;
            reply.id = frame->id;
            Mc__Sdk__Pong pong = MC__SDK__PONG__INIT;
            Mc__Sdk__InvokeResult result = MC__SDK__INVOKE_RESULT__INIT;
            char out[512];
            if (frame->body_case == MC__SDK__FRAME__BODY_INVOKE) {
                snprintf (out, sizeof out, "%s %s\n", frame->invoke->subcommand,
                          frame->invoke->args_json);
                result.exit_code = 7;
                result.stdout = out;
                result.stderr = "";
                reply.body_case = MC__SDK__FRAME__BODY_INVOKE_RESULT;
                reply.invoke_result = &result;
                s_send (sock, &reply);
            } else if (frame->body_case == MC__SDK__FRAME__BODY_PING) {
                reply.body_case = MC__SDK__FRAME__BODY_PONG;
                reply.pong = &pong;
                s_send (sock, &reply);
            }
            mc__sdk__frame__free_unpacked (frame, NULL);
        }
    } else {
        fprintf (stderr, "sdk_probe: unknown scenario %s\n", scenario);
        rc = 2;
    }
    zsock_destroy (&sock);
    zcert_destroy (&cert);
    fflush (stdout); // before any sanitizer exit hook, which skips stdio
    return rc;
}
