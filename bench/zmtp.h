/*  zmtp: a minimal ZMTP 3.0 DEALER peer (NULL mechanism) over a non-blocking stream
    socket, for bench/mc-load.

    DESIGN. With libzmq, each of the N sockets a load generator plays costs a mailbox,
    an eventfd and a hand-off through libzmq's I/O thread per message, and every
    ZMQ_EVENTS check is a poll() system call: at 500 sessions and 50k requests per
    second the client needed more CPU than the core it measured (docs/benchmarks.md),
    on the same two cores. Speaking the wire protocol directly (rfc.zeromq.org/spec/23:
    greeting, READY with Socket-Type DEALER, then frames) costs one send() per request
    and one recv() per readable wake-up, and the server cannot tell the difference:
    it is the same ZMTP 3.0 a libzmq DEALER speaks. Single-part messages only (the
    modcore SDK protocol and the echo baseline use nothing else); commands from the
    server after READY are skipped. No CURVE. */
#ifndef MC_ZMTP_H
#define MC_ZMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;            // the stream socket (non-blocking), -1 when closed
    int stage;         // 0: awaiting the server's greeting, 1: its READY, 2: ready
    uint8_t *rbuf;     // bytes received, not yet parsed
    size_t rlen, rcap; // used, allocated
    uint8_t *wbuf;     // bytes to send that the socket did not take yet
    size_t wlen, wcap; // used, allocated
} zmtp_t;

//  Connects to ipc://PATH or tcp://HOST:PORT and completes the handshake (greeting and
//  READY both ways, at most 5 s). Returns 0, or -1 with errno set.
int zmtp_connect (zmtp_t *self, const char *endpoint);

//  Queues one single-part message and writes what the socket takes. Returns 0, or -1
//  if the connection failed.
int zmtp_send (zmtp_t *self, const void *data, size_t len);

//  Writes queued bytes. Returns 0 when nothing is left, 1 if some remain (wait for
//  EPOLLOUT), -1 if the connection failed.
int zmtp_flush (zmtp_t *self);

//  True if bytes wait to be written.
bool zmtp_pending (const zmtp_t *self);

//  Reads what is available and calls fn for each complete message. Returns 0, or -1
//  if the peer closed the connection or broke the protocol.
int zmtp_read (zmtp_t *self, void (*fn) (void *arg, const uint8_t *data, size_t len), void *arg);

//  Closes the socket and frees the buffers.
void zmtp_close (zmtp_t *self);

#endif
