/*  webhook: the durable outbox and signed delivery of events to module webhooks.
    Bound at inproc://modcore.webhook; args: mc_context_t *. */
#ifndef MC_WEBHOOK_H
#define MC_WEBHOOK_H

#include <czmq.h>
#include <stddef.h>
#include <stdint.h>

void mc_webhook_actor (zsock_t *pipe, void *args);

//  X-Selena-Signature value: "sha256=" + hex HMAC-SHA256 (key = the secret's ASCII
//  characters, message = body). out holds at least 72 bytes.
void mc_webhook_sign_selena (const char *secret, const uint8_t *body, size_t len, char *out);

//  webhook-signature value (Standard Webhooks): "v1," + base64 HMAC-SHA256 over
//  "<id>.<timestamp>.<body>" with the same key. out holds at least 52 bytes.
void mc_webhook_sign_standard (const char *secret, const char *id, int64_t timestamp,
                               const uint8_t *body, size_t len, char *out);

//  The Standard Webhooks secret a module verifies with: "whsec_" + base64 of the
//  secret's ASCII characters. out holds at least 96 bytes.
void mc_webhook_standard_secret (const char *secret, char *out);

//  Delay before attempt number `attempts + 1` after a failure: base * 2^(attempts-1),
//  capped, with +-20% jitter from jitter_unit in [0, 1).
uint64_t mc_webhook_backoff_ms (uint32_t attempts, uint32_t base_ms, uint32_t cap_ms,
                                double jitter_unit);

#endif
