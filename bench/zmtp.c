/*  zmtp: see zmtp.h. Frame layout (ZMTP 3.0): one flags byte (bit 0 MORE, bit 1 LONG,
    bit 2 COMMAND), the size in one byte or, if LONG, eight bytes big-endian, then the
    body. The greeting is 64 bytes: 0xFF, 8 bytes of padding, 0x7F, version 3.0, the
    mechanism name padded to 20 bytes, as-server, 31 bytes of filler. */
#include "zmtp.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define GREETING_LEN 64

static void s_reserve (uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need)
        cap2 *= 2;
    *buf = realloc (*buf, cap2);
    if (!*buf)
        abort ();
    *cap = cap2;
}

static void s_queue (zmtp_t *self, const void *data, size_t len)
{
    s_reserve (&self->wbuf, &self->wcap, self->wlen + len);
    memcpy (self->wbuf + self->wlen, data, len);
    self->wlen += len;
}

//  Queues a frame header for a body of len bytes with the given flag bits.
static void s_queue_header (zmtp_t *self, uint8_t flags, size_t len)
{
    uint8_t header[9];
    if (len <= 255) {
        header[0] = flags;
        header[1] = (uint8_t)len;
        s_queue (self, header, 2);
        return;
    }
    header[0] = flags | 0x02;
    for (int i = 0; i < 8; i++)
        header[1 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    s_queue (self, header, 9);
}

static int s_open (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) == 0) {
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        if (strlen (endpoint + 6) >= sizeof addr.sun_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        strcpy (addr.sun_path, endpoint + 6);
        int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect (fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            close (fd);
            return -1;
        }
        return fd;
    }
    if (strncmp (endpoint, "tcp://", 6) == 0) {
        char host[256];
        snprintf (host, sizeof host, "%s", endpoint + 6);
        char *colon = strrchr (host, ':');
        if (!colon) {
            errno = EINVAL;
            return -1;
        }
        *colon = 0;
        struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
        if (getaddrinfo (host, colon + 1, &hints, &ai) != 0) {
            errno = EINVAL;
            return -1;
        }
        int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect (fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close (fd);
            fd = -1;
        }
        freeaddrinfo (ai);
        int one = 1;
        if (fd >= 0)
            setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        return fd;
    }
    errno = EINVAL;
    return -1;
}

static void s_no_message (void *arg, const uint8_t *data, size_t len)
{
    (void)arg, (void)data, (void)len; // none can come before our first request
}

int zmtp_connect (zmtp_t *self, const char *endpoint)
{
    memset (self, 0, sizeof *self);
    self->fd = s_open (endpoint); // a blocking connect: local endpoints answer at once
    if (self->fd < 0)
        return -1;
    fcntl (self->fd, F_SETFL, fcntl (self->fd, F_GETFL) | O_NONBLOCK);
    uint8_t greeting[GREETING_LEN] = {0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 0};
    memcpy (greeting + 12, "NULL", 4);
    s_queue (self, greeting, sizeof greeting);
    //  READY: "\5READY", then the property Socket-Type = DEALER.
    static const uint8_t ready[] = {5,   'R', 'E', 'A', 'D', 'Y', 11,  'S', 'o', 'c',
                                    'k', 'e', 't', '-', 'T', 'y', 'p', 'e', 0,   0,
                                    0,   6,   'D', 'E', 'A', 'L', 'E', 'R'};
    s_queue_header (self, 0x04, sizeof ready);
    s_queue (self, ready, sizeof ready);
    //  The handshake is completed here, before any message: libzmq drops a connection
    //  whose first message arrives before it has sent its own READY.
    struct timespec t0, t;
    clock_gettime (CLOCK_MONOTONIC, &t0);
    while (self->stage < 2) {
        clock_gettime (CLOCK_MONOTONIC, &t);
        struct pollfd pfd = {self->fd, (short)(POLLIN | (self->wlen ? POLLOUT : 0)), 0};
        if (zmtp_flush (self) < 0 || poll (&pfd, 1, 100) < 0 ||
            zmtp_read (self, s_no_message, NULL) != 0 || t.tv_sec - t0.tv_sec > 5) {
            int saved = errno ? errno : ETIMEDOUT;
            zmtp_close (self);
            errno = saved;
            return -1;
        }
    }
    return 0;
}

int zmtp_flush (zmtp_t *self)
{
    size_t off = 0;
    while (off < self->wlen) {
        ssize_t n = send (self->fd, self->wbuf + off, self->wlen - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else
            return -1;
    }
    memmove (self->wbuf, self->wbuf + off, self->wlen - off);
    self->wlen -= off;
    return self->wlen ? 1 : 0;
}

bool zmtp_pending (const zmtp_t *self)
{
    return self->wlen > 0;
}

int zmtp_send (zmtp_t *self, const void *data, size_t len)
{
    s_queue_header (self, 0x00, len);
    s_queue (self, data, len);
    return zmtp_flush (self) < 0 ? -1 : 0;
}

int zmtp_read (zmtp_t *self, void (*fn) (void *arg, const uint8_t *data, size_t len), void *arg)
{
    for (;;) {
        s_reserve (&self->rbuf, &self->rcap, self->rlen + 65536);
        size_t room = self->rcap - self->rlen;
        ssize_t n = recv (self->fd, self->rbuf + self->rlen, room, 0);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        self->rlen += (size_t)n;
        if ((size_t)n < room)
            break; // a short read: the socket is drained
    }
    size_t at = 0;
    if (self->stage == 0) {
        if (self->rlen < GREETING_LEN)
            return 0;
        if (self->rbuf[0] != 0xFF || self->rbuf[9] != 0x7F || self->rbuf[10] < 3)
            return -1; // not a ZMTP 3 peer
        at = GREETING_LEN;
        self->stage = 1;
    }
    for (;;) {
        if (self->rlen - at < 2)
            break;
        uint8_t flags = self->rbuf[at];
        size_t head = (flags & 0x02) ? 9 : 2;
        if (self->rlen - at < head)
            break;
        uint64_t len = 0;
        if (flags & 0x02)
            for (int i = 0; i < 8; i++)
                len = (len << 8) | self->rbuf[at + 1 + i];
        else
            len = self->rbuf[at + 1];
        if (len > (64u << 20))
            return -1;
        if (self->rlen - at - head < len)
            break;
        const uint8_t *body = self->rbuf + at + head;
        if (flags & 0x04) {
            if (self->stage == 1 && len >= 6 && memcmp (body, "\5READY", 6) == 0)
                self->stage = 2;
        } else if (self->stage == 2 && !(flags & 0x01))
            fn (arg, body, (size_t)len); // the last (only) part of a message
        at += head + (size_t)len;
    }
    memmove (self->rbuf, self->rbuf + at, self->rlen - at);
    self->rlen -= at;
    return 0;
}

void zmtp_close (zmtp_t *self)
{
    if (self->fd >= 0)
        close (self->fd);
    self->fd = -1;
    free (self->rbuf);
    free (self->wbuf);
    self->rbuf = self->wbuf = NULL;
    self->rlen = self->rcap = self->wlen = self->wcap = 0;
}
