#include "core/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Status codes counted by name; any other lands in the last slot ("other").
static const int s_statuses[] = {200, 201, 204, 400, 401, 403, 404, 405, 409,
                                 413, 415, 422, 429, 500, 502, 503, 504, 507};
#define STATUSES (sizeof s_statuses / sizeof s_statuses[0] + 1)

//  Latency buckets (seconds) of the request histogram.
static const double s_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                  0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};
#define BOUNDS (sizeof s_bounds / sizeof s_bounds[0])

static struct {
    _Atomic (const char *) actor_names[MC_METRICS_MAX_ACTORS]; // registered names
    atomic_uint_fast64_t sent[MC_METRICS_MAX_ACTORS];          // messages sent to each actor
    atomic_uint_fast64_t received[MC_METRICS_MAX_ACTORS];      // taken off its socket
    atomic_uint_fast64_t handled[MC_METRICS_MAX_ACTORS];       // requests answered
    atomic_uint_fast64_t handling_ns[MC_METRICS_MAX_ACTORS];   // time from receipt to answer
    atomic_uint_fast64_t requests[MC_METRICS_MAX_ROUTES + 1][STATUSES];  // by route, status
    atomic_uint_fast64_t latency[MC_METRICS_MAX_ROUTES + 1][BOUNDS + 1]; // histogram
    atomic_uint_fast64_t latency_ns[MC_METRICS_MAX_ROUTES + 1];          // sum
    atomic_uint_fast64_t rate_limited;
    atomic_uint_fast64_t sdk_overloaded;
    atomic_uint_fast64_t deliveries[MC_DELIVERY_OUTCOMES];
    atomic_int_fast64_t outbox;
} s_m;

static __thread int s_thread_actor = -1;

//  Per-thread table of client sockets and the actor each talks to.
#define CLIENTS 32
static __thread const void *s_client_sock[CLIENTS];
static __thread int s_client_actor[CLIENTS];

int mc_metrics_actor_id (const char *name)
{
    for (int i = 0; i < MC_METRICS_MAX_ACTORS; i++) {
        const char *have = atomic_load (&s_m.actor_names[i]);
        if (have && strcmp (have, name) == 0)
            return i;
        if (!have) {
            //  Claim the free slot; on a race, look again from here.
            char *copy = strdup (name);
            const char *expected = NULL;
            if (atomic_compare_exchange_strong (&s_m.actor_names[i], &expected, copy))
                return i;
            free (copy);
            if (strcmp (expected, name) == 0)
                return i;
        }
    }
    return -1;
}

void mc_metrics_set_thread_actor (const char *name)
{
    s_thread_actor = mc_metrics_actor_id (name);
}

int mc_metrics_thread_actor (void)
{
    return s_thread_actor;
}

void mc_metrics_actor_sent (int id)
{
    if (id >= 0)
        atomic_fetch_add_explicit (&s_m.sent[id], 1, memory_order_relaxed);
}

void mc_metrics_actor_received (int id)
{
    if (id >= 0)
        atomic_fetch_add_explicit (&s_m.received[id], 1, memory_order_relaxed);
}

void mc_metrics_actor_handled (int id, uint64_t handling_ns)
{
    if (id < 0)
        return;
    atomic_fetch_add_explicit (&s_m.handled[id], 1, memory_order_relaxed);
    atomic_fetch_add_explicit (&s_m.handling_ns[id], handling_ns, memory_order_relaxed);
}

void mc_metrics_client_register (const void *socket, int id)
{
    for (int i = 0; i < CLIENTS; i++)
        if (s_client_sock[i] == socket || !s_client_sock[i]) {
            s_client_sock[i] = socket;
            s_client_actor[i] = id;
            return;
        }
    //  Full: replace the oldest slot (sockets of finished sagas).
    memmove (s_client_sock, s_client_sock + 1, (CLIENTS - 1) * sizeof s_client_sock[0]);
    memmove (s_client_actor, s_client_actor + 1, (CLIENTS - 1) * sizeof s_client_actor[0]);
    s_client_sock[CLIENTS - 1] = socket;
    s_client_actor[CLIENTS - 1] = id;
}

int mc_metrics_client_actor (const void *socket)
{
    for (int i = 0; i < CLIENTS && s_client_sock[i]; i++)
        if (s_client_sock[i] == socket)
            return s_client_actor[i];
    return -1;
}

void mc_metrics_request (int route, int status, uint64_t duration_ns)
{
    size_t r = route >= 0 && route < MC_METRICS_MAX_ROUTES ? (size_t)route : MC_METRICS_MAX_ROUTES;
    size_t s = STATUSES - 1;
    for (size_t i = 0; i < STATUSES - 1; i++)
        if (s_statuses[i] == status)
            s = i;
    atomic_fetch_add_explicit (&s_m.requests[r][s], 1, memory_order_relaxed);
    double secs = (double)duration_ns / 1e9;
    size_t b = BOUNDS;
    for (size_t i = 0; i < BOUNDS; i++)
        if (secs <= s_bounds[i]) {
            b = i;
            break;
        }
    atomic_fetch_add_explicit (&s_m.latency[r][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit (&s_m.latency_ns[r], duration_ns, memory_order_relaxed);
}

void mc_metrics_sdk_overloaded (void)
{
    atomic_fetch_add_explicit (&s_m.sdk_overloaded, 1, memory_order_relaxed);
}

void mc_metrics_rate_limited (void)
{
    atomic_fetch_add_explicit (&s_m.rate_limited, 1, memory_order_relaxed);
}

void mc_metrics_delivery (mc_delivery_outcome_t outcome)
{
    atomic_fetch_add_explicit (&s_m.deliveries[outcome], 1, memory_order_relaxed);
}

void mc_metrics_outbox_add (int64_t delta)
{
    atomic_fetch_add_explicit (&s_m.outbox, delta, memory_order_relaxed);
}

//  Appends printf output to a growing buffer.
typedef struct {
    char *text;
    size_t len, cap;
} buf_t;

static void s_put (buf_t *b, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));
static void s_put (buf_t *b, const char *fmt, ...)
{
    for (;;) {
        va_list args;
        va_start (args, fmt);
        int n = vsnprintf (b->text + b->len, b->cap - b->len, fmt, args);
        va_end (args);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0);
        b->text = realloc (b->text, b->cap);
        if (!b->text)
            abort ();
    }
}

//  Resident memory (bytes) and CPU seconds of this process, from /proc.
static void s_process (double *rss, double *cpu)
{
    *rss = *cpu = 0;
    FILE *f = fopen ("/proc/self/statm", "r");
    long pages_total = 0, pages_rss = 0;
    if (f && fscanf (f, "%ld %ld", &pages_total, &pages_rss) == 2)
        *rss = (double)pages_rss * (double)sysconf (_SC_PAGESIZE);
    if (f)
        fclose (f);
    f = fopen ("/proc/self/stat", "r");
    char line[2048];
    if (f && fgets (line, sizeof line, f)) {
        char *p = strrchr (line, ')'); // the command name may hold spaces
        unsigned long utime = 0, stime = 0;
        if (p && sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                         &stime) == 2)
            *cpu = (double)(utime + stime) / (double)sysconf (_SC_CLK_TCK);
    }
    if (f)
        fclose (f);
}

char *mc_metrics_render (const char *const *route_names, size_t route_count, const char *extra)
{
    buf_t b = {malloc (16384), 0, 16384};
    if (!b.text)
        abort ();
    s_put (&b, "# HELP modcore_http_requests_total API requests by route and status.\n"
               "# TYPE modcore_http_requests_total counter\n");
    for (size_t r = 0; r <= MC_METRICS_MAX_ROUTES; r++) {
        const char *route = r < route_count ? route_names[r] : "unmatched";
        if (r >= route_count && r != MC_METRICS_MAX_ROUTES)
            continue;
        for (size_t s = 0; s < STATUSES; s++) {
            uint64_t n = atomic_load (&s_m.requests[r][s]);
            if (n == 0)
                continue;
            char status[8];
            if (s < STATUSES - 1)
                snprintf (status, sizeof status, "%d", s_statuses[s]);
            else
                snprintf (status, sizeof status, "other");
            s_put (&b, "modcore_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n", route,
                   status, (unsigned long long)n);
        }
    }
    s_put (&b, "# HELP modcore_http_request_duration_seconds Time to answer an API request.\n"
               "# TYPE modcore_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= MC_METRICS_MAX_ROUTES; r++) {
        const char *route = r < route_count ? route_names[r] : "unmatched";
        if (r >= route_count && r != MC_METRICS_MAX_ROUTES)
            continue;
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= BOUNDS; i++)
            cumulative += atomic_load (&s_m.latency[r][i]);
        if (cumulative == 0)
            continue;
        uint64_t running = 0;
        for (size_t i = 0; i < BOUNDS; i++) {
            running += atomic_load (&s_m.latency[r][i]);
            s_put (&b,
                   "modcore_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                   route, s_bounds[i], (unsigned long long)running);
        }
        s_put (&b, "modcore_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
               route, (unsigned long long)cumulative);
        s_put (&b, "modcore_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route,
               (double)atomic_load (&s_m.latency_ns[r]) / 1e9);
        s_put (&b, "modcore_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route,
               (unsigned long long)cumulative);
    }
    s_put (&b,
           "# HELP modcore_rate_limited_total Requests refused by the per-token rate limit.\n"
           "# TYPE modcore_rate_limited_total counter\n"
           "modcore_rate_limited_total %llu\n",
           (unsigned long long)atomic_load (&s_m.rate_limited));
    s_put (&b,
           "# HELP modcore_sdk_overloaded_total Native requests refused unrun (503 OVERLOADED): "
           "the worker queue was full or the request waited past the call timeout.\n"
           "# TYPE modcore_sdk_overloaded_total counter\n"
           "modcore_sdk_overloaded_total %llu\n",
           (unsigned long long)atomic_load (&s_m.sdk_overloaded));
    s_put (&b, "# HELP modcore_actor_queue_depth Messages waiting on an actor's socket.\n"
               "# TYPE modcore_actor_queue_depth gauge\n");
    for (int i = 0; i < MC_METRICS_MAX_ACTORS; i++) {
        const char *name = atomic_load (&s_m.actor_names[i]);
        if (!name)
            continue;
        uint64_t sent = atomic_load (&s_m.sent[i]), received = atomic_load (&s_m.received[i]);
        s_put (&b, "modcore_actor_queue_depth{actor=\"%s\"} %lld\n", name,
               (long long)(sent > received ? sent - received : 0));
    }
    s_put (&b, "# HELP modcore_actor_requests_total Requests an actor answered.\n"
               "# TYPE modcore_actor_requests_total counter\n");
    for (int i = 0; i < MC_METRICS_MAX_ACTORS; i++) {
        const char *name = atomic_load (&s_m.actor_names[i]);
        if (name)
            s_put (&b, "modcore_actor_requests_total{actor=\"%s\"} %llu\n", name,
                   (unsigned long long)atomic_load (&s_m.handled[i]));
    }
    s_put (&b, "# HELP modcore_actor_handling_seconds_total Time from receipt to answer.\n"
               "# TYPE modcore_actor_handling_seconds_total counter\n");
    for (int i = 0; i < MC_METRICS_MAX_ACTORS; i++) {
        const char *name = atomic_load (&s_m.actor_names[i]);
        if (name)
            s_put (&b, "modcore_actor_handling_seconds_total{actor=\"%s\"} %.6f\n", name,
                   (double)atomic_load (&s_m.handling_ns[i]) / 1e9);
    }
    static const char *const outcomes[] = {"delivered", "retried", "dead", "gone"};
    s_put (&b, "# HELP modcore_webhook_deliveries_total Delivery attempts by outcome.\n"
               "# TYPE modcore_webhook_deliveries_total counter\n");
    for (int i = 0; i < MC_DELIVERY_OUTCOMES; i++)
        s_put (&b, "modcore_webhook_deliveries_total{outcome=\"%s\"} %llu\n", outcomes[i],
               (unsigned long long)atomic_load (&s_m.deliveries[i]));
    s_put (&b,
           "# HELP modcore_webhook_outbox_pending Deliveries waiting in the outbox.\n"
           "# TYPE modcore_webhook_outbox_pending gauge\n"
           "modcore_webhook_outbox_pending %lld\n",
           (long long)atomic_load (&s_m.outbox));
    double rss, cpu;
    s_process (&rss, &cpu);
    s_put (&b,
           "# HELP process_resident_memory_bytes Resident memory of modcored.\n"
           "# TYPE process_resident_memory_bytes gauge\n"
           "process_resident_memory_bytes %.0f\n"
           "# HELP process_cpu_seconds_total CPU time of modcored.\n"
           "# TYPE process_cpu_seconds_total counter\n"
           "process_cpu_seconds_total %.2f\n",
           rss, cpu);
    if (extra)
        s_put (&b, "%s", extra);
    return b.text;
}
