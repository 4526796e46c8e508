/*  mc-sink: a cheap HTTP receiver for the fan-out scenario, run as a real installed
    module (entry ["./mc-sink"]) or by hand. One thread, epoll, keep-alive; every
    request is answered 200 "{}" in one write, without verifying signatures, so the
    receivers cost as little as possible and the core's side of the fan-out is what is
    measured. It counts POSTs to /webhook/...

        GET  /health  200
        GET  /count   {"events": N, "first_ns": T, "last_ns": T} (CLOCK_MONOTONIC)
        POST /reset   forget the count
        any other     200 {} (POST /webhook/... counted)

    As a module (SELENA_MODULE_TOKEN and SELENA_CORE_URL set) it subscribes, once it
    listens, to the patterns in ./patterns.txt (comma-separated; default "bench.*")
    with webhook_url http://127.0.0.1:PORT/webhook/events, retrying until the core
    accepts (the module record is committed only after /health answered).

    usage: mc-sink [PORT]   (default: $SELENA_MODULE_PORT) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE  (256 * 1024)
#define MAX_CONNS 4096

typedef struct {
    int fd;     // -1 when free
    char *buf;  // bytes received, not yet parsed
    size_t len; // their count
} conn_t;

static conn_t s_conns[MAX_CONNS];
static unsigned long long s_events, s_first_ns, s_last_ns;
static int s_port;

static unsigned long long s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static void s_reply (int fd, const char *body)
{
    char out[512];
    int n = snprintf (out, sizeof out,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                      "%zu\r\n\r\n%s",
                      strlen (body), body);
    if (send (fd, out, (size_t)n, MSG_NOSIGNAL) < 0)
        return; // the peer went away: its connection is closed on the next read
}

//  Serves every complete request in c->buf. Returns -1 to close.
static int s_serve (conn_t *c)
{
    for (;;) {
        char *end = memmem (c->buf, c->len, "\r\n\r\n", 4);
        if (!end)
            return c->len >= BUF_SIZE ? -1 : 0;
        size_t head = (size_t)(end - c->buf) + 4;
        long body = 0;
        bool close_after = false;
        for (char *line = memchr (c->buf, '\n', head); line && line < end;
             line = memchr (line + 1, '\n', (size_t)(end - line))) {
            if (strncasecmp (line + 1, "content-length:", 15) == 0)
                body = strtol (line + 16, NULL, 10);
            else if (strncasecmp (line + 1, "connection: close", 17) == 0)
                close_after = true;
        }
        if (body < 0 || head + (size_t)body > BUF_SIZE)
            return -1;
        if (c->len < head + (size_t)body)
            return 0;
        if (strncmp (c->buf, "GET /count", 10) == 0) {
            char text[160];
            snprintf (text, sizeof text,
                      "{\"events\": %llu, \"first_ns\": %llu, \"last_ns\": %llu}", s_events,
                      s_first_ns, s_last_ns);
            s_reply (c->fd, text);
        } else if (strncmp (c->buf, "POST /reset", 11) == 0) {
            s_events = s_first_ns = s_last_ns = 0;
            s_reply (c->fd, "{}");
        } else {
            if (strncmp (c->buf, "POST /webhook", 13) == 0) {
                unsigned long long now = s_now ();
                if (s_events++ == 0)
                    s_first_ns = now;
                s_last_ns = now;
            }
            s_reply (c->fd, "{}");
        }
        memmove (c->buf, c->buf + head + body, c->len - head - (size_t)body);
        c->len -= head + (size_t)body;
        if (close_after)
            return -1;
    }
}

//  Module mode: subscribe through the core (blocking HTTP, own thread).
static void *s_subscriber (void *arg)
{
    const char *token = getenv ("SELENA_MODULE_TOKEN");
    const char *core = getenv ("SELENA_CORE_URL"); // http://127.0.0.1:PORT/api/v1
    char host[64] = "127.0.0.1";
    int port = 0;
    char base[256] = "";
    if (!core || sscanf (core, "http://%63[^:]:%d%255s", host, &port, base) < 2) {
        fprintf (stderr, "mc-sink: SELENA_CORE_URL not understood\n");
        return NULL;
    }
    char patterns[1024] = "bench.*";
    FILE *f = fopen ("patterns.txt", "r");
    if (f) {
        if (fgets (patterns, sizeof patterns, f))
            patterns[strcspn (patterns, "\r\n")] = 0;
        fclose (f);
    }
    char types[1200] = "";
    char *save = NULL;
    for (char *p = strtok_r (patterns, ",", &save); p; p = strtok_r (NULL, ",", &save))
        snprintf (types + strlen (types), sizeof types - strlen (types), "%s\"%s\"",
                  *types ? "," : "", p);
    char body[1600];
    int body_len = snprintf (body, sizeof body,
                             "{\"event_types\":[%s],\"webhook_url\":"
                             "\"http://127.0.0.1:%d/webhook/events\"}",
                             types, s_port);
    char request[2600];
    int len = snprintf (request, sizeof request,
                        "POST %s/events/subscribe HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: "
                        "Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                        "Connection: close\r\n\r\n%s",
                        base, host, port, token, body_len, body);
    for (int attempt = 0; attempt < 600; attempt++) {
        if (attempt)
            usleep (100000);
        int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
        inet_pton (AF_INET, host, &addr.sin_addr);
        if (connect (fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
            send (fd, request, (size_t)len, MSG_NOSIGNAL) != len) {
            close (fd);
            continue;
        }
        char answer[4096];
        ssize_t n = recv (fd, answer, sizeof answer - 1, MSG_WAITALL);
        close (fd);
        if (n > 12 && strncmp (answer + 9, "201", 3) == 0) {
            printf ("mc-sink: subscribed to %s\n", types);
            fflush (stdout);
            return NULL;
        }
    }
    fprintf (stderr, "mc-sink: could not subscribe\n");
    return NULL;
}

int main (int argc, char **argv)
{
    const char *port_text = argc > 1 ? argv[1] : getenv ("SELENA_MODULE_PORT");
    s_port = port_text ? atoi (port_text) : 0;
    if (s_port <= 0) {
        fprintf (stderr, "usage: mc-sink PORT (or SELENA_MODULE_PORT)\n");
        return 2;
    }
    signal (SIGPIPE, SIG_IGN);
    int lfd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt (lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)s_port)};
    inet_pton (AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind (lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen (lfd, 1024) != 0) {
        fprintf (stderr, "mc-sink: cannot listen on 127.0.0.1:%d: %s\n", s_port, strerror (errno));
        return 1;
    }
    for (int i = 0; i < MAX_CONNS; i++)
        s_conns[i].fd = -1;
    int ep = epoll_create1 (EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAX_CONNS};
    epoll_ctl (ep, EPOLL_CTL_ADD, lfd, &ev);
    if (getenv ("SELENA_MODULE_TOKEN") && getenv ("SELENA_CORE_URL")) {
        pthread_t thread;
        pthread_create (&thread, NULL, s_subscriber, NULL);
        pthread_detach (thread);
    }
    printf ("mc-sink: listening on 127.0.0.1:%d\n", s_port);
    fflush (stdout);
    struct epoll_event events[128];
    for (;;) {
        int n = epoll_wait (ep, events, 128, -1);
        for (int i = 0; i < n; i++) {
            unsigned id = events[i].data.u32;
            if (id == MAX_CONNS) {
                int fd;
                while ((fd = accept4 (lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int slot = 0;
                    while (slot < MAX_CONNS && s_conns[slot].fd >= 0)
                        slot++;
                    if (slot == MAX_CONNS) {
                        close (fd);
                        continue;
                    }
                    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    s_conns[slot].fd = fd;
                    s_conns[slot].len = 0;
                    if (!s_conns[slot].buf)
                        s_conns[slot].buf = malloc (BUF_SIZE);
                    struct epoll_event cev = {.events = EPOLLIN, .data.u32 = (unsigned)slot};
                    epoll_ctl (ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            conn_t *c = &s_conns[id];
            ssize_t got = recv (c->fd, c->buf + c->len, BUF_SIZE - c->len, 0);
            if (got > 0) {
                c->len += (size_t)got;
                if (s_serve (c) == 0)
                    continue;
            } else if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            epoll_ctl (ep, EPOLL_CTL_DEL, c->fd, NULL);
            close (c->fd);
            c->fd = -1;
        }
    }
}
