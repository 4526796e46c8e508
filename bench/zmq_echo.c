/*  zmq_echo: the raw ZeroMQ request/reply baseline of scenario 4. A ROUTER bound at
    ENDPOINT sends every message straight back to whoever sent it (routing id, then
    the payload frame unchanged, without copying), on one thread. mc-load's native
    transport counts an echoed HELLO as WELCOME and an echoed REQUEST as a 200, so the
    same client measures the socket round trip with no decoding, authentication,
    dispatch or actor behind it.

    usage: zmq_echo ENDPOINT   (stops on SIGTERM/SIGINT) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <zmq.h>

static volatile sig_atomic_t s_stop;

static void s_on_signal (int sig)
{
    s_stop = 1;
}

int main (int argc, char **argv)
{
    if (argc != 2) {
        fprintf (stderr, "usage: zmq_echo ENDPOINT\n");
        return 2;
    }
    void *ctx = zmq_ctx_new ();
    zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, 8192);
    void *router = zmq_socket (ctx, ZMQ_ROUTER);
    int zero = 0, hwm = 100000, timeout = 200;
    zmq_setsockopt (router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt (router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (router, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_bind (router, argv[1]) != 0) {
        fprintf (stderr, "zmq_echo: cannot bind %s: %s\n", argv[1], zmq_strerror (zmq_errno ()));
        return 1;
    }
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    printf ("zmq_echo: bound at %s\n", argv[1]);
    fflush (stdout);
    unsigned long long echoed = 0;
    while (!s_stop) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, router, 0) < 0) {
            zmq_msg_close (&part);
            if (zmq_errno () == EAGAIN || zmq_errno () == EINTR)
                continue;
            break;
        }
        //  Every part goes back as it came; the first (routing id) routes the reply.
        for (;;) {
            int more = zmq_msg_more (&part);
            zmq_msg_send (&part, router, more ? ZMQ_SNDMORE : 0);
            zmq_msg_close (&part);
            if (!more)
                break;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, router, 0) < 0) {
                zmq_msg_close (&part);
                break;
            }
        }
        echoed++;
    }
    printf ("zmq_echo: %llu messages echoed\n", echoed);
    zmq_close (router);
    zmq_ctx_term (ctx);
    return 0;
}
