/*  civetweb_hello: the raw civetweb baseline of scenario 1. One handler answers every
    request with a fixed JSON body, headers and body in one mg_write, on the same
    civetweb build, options, thread count and pass-through auth handler as the modcore
    gateway (tcp_nodelay=1, keep-alive): what the gateway would reach if authentication, the rate
   limit, the route table and the actor hop cost nothing.

    usage: civetweb_hello PORT [THREADS]   (listens on 127.0.0.1; stops on SIGTERM/SIGINT) */
#include <civetweb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop;

static void s_on_signal (int sig)
{
    s_stop = 1;
}

static int s_hello (struct mg_connection *conn, void *cbdata)
{
    static const char response[] = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: 15\r\n"
                                   "\r\n"
                                   "{\"devices\": []}";
    mg_write (conn, response, sizeof response - 1);
    return 200;
}

static int s_pass (struct mg_connection *conn, void *cbdata)
{
    return 1;
}

int main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "usage: civetweb_hello PORT [THREADS]\n");
        return 2;
    }
    char listen[64];
    snprintf (listen, sizeof listen, "127.0.0.1:%s", argv[1]);
    const char *threads = argc > 2 ? argv[2] : "64";
    const char *options[] = {"listening_ports",
                             listen,
                             "num_threads",
                             threads,
                             "tcp_nodelay",
                             "1",
                             "enable_keep_alive",
                             "yes",
                             "keep_alive_timeout_ms",
                             "5000",
                             "request_timeout_ms",
                             "60000",
                             NULL};
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    mg_init_library (0);
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    if (!ctx) {
        fprintf (stderr, "civetweb_hello: cannot listen on %s\n", listen);
        return 1;
    }
    mg_set_auth_handler (ctx, "/", s_pass, NULL); // as the gateway: no .htpasswd lookup
    mg_set_request_handler (ctx, "/", s_hello, NULL);
    signal (SIGTERM, s_on_signal);
    signal (SIGINT, s_on_signal);
    printf ("civetweb_hello: listening on %s with %s threads\n", listen, threads);
    fflush (stdout);
    while (!s_stop)
        pause ();
    mg_stop (ctx);
    mg_exit_library ();
    return 0;
}
