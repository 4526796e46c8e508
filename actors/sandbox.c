/*  sandbox actor

    DESIGN. sandbox owns every module process: it builds each one's sandbox, captures
    its output, supervises it, and reports what happens to the registry.

    Isolation. A process is started through modcore-launch (core/launch.c) in a new
    session with its environment in <dir>/.env.module (0600), which the launcher reads
    and deletes before anything of the module runs. The launcher joins the module's
    cgroups (made and limited here first: memory from resources.memory_mb, pids, CPU
    quota from resources.cpu), sets rlimits, and execs bubblewrap: new mount, pid, ipc
    and uts namespaces (net too for "network": "none"), / read-only, the data dir
    hidden under a tmpfs with only the module's own dir (read-only) and its data/
    subdir (writable) shown, <data>/run read-only (native SDK socket), the core's
    config file hidden, a private size-limited /tmp, --die-with-parent; inside, the
    launcher drops to the module user, clears every capability, sets no_new_privs and
    loads a seccomp filter before exec. The launcher has PR_SET_PDEATHSIG(SIGKILL)
    (kept across the exec of bwrap), bwrap's init dies with it, and the kernel kills a
    pid namespace with its init: kill -9 of the core leaves no module process. A
    restarted core kills whatever its instance's cgroups still hold (mc_cgroups_cleanup)
    and deletes stray .env.module files. docs/operations.md has the whole list.

    Processes (proc_t, at most one per module name):
        LAUNCHING  started; a health worker polls GET /health until 200 (health_timeout)
        TESTING    an install test run: like LAUNCHING (or running the manifest's test
                   command to its exit), then stopped; the caller waits for the verdict
        RUNNING    healthy; periodic single probes (every health_interval, not before
                   health_grace after the start); health_failures in a row -> restart
        STOPPING   SIGTERM to the module's processes (not to bwrap, which would SIGKILL
                   them at once), SIGKILL of the whole tree when the grace timer fires
    Stdout and stderr are pipes read in this loop and appended to <data>/logs/<name>.log,
    rotated by size (log_max_kb, log_keep files); the tail of stderr is kept in memory.
    Exits are seen through a pidfd in the loop, so the loop never blocks on a child.
    Health checks block (connect, read), so each runs in a short-lived worker thread
    that reports over inproc://modcore.sandbox.health; reports for a process that is
    gone are matched by pid and dropped.

    Supervision (svc_t, one per launched module until it is stopped): the launch spec
    (token included: it is needed to relaunch) and the policy of its runtime_mode.
        always_on  an exit that was not asked for schedules a restart after a backoff:
                   restart_base_ms, doubling to restart_max_ms, back to the base once
                   the process had been healthy for restart_reset_s. crashloop_exits
                   exits within crashloop_window_s mark a crash loop (CRASHLOOP, with
                   exit code or signal and the last 50 lines of stderr); the restarts
                   go on at the capped backoff, and the loop ends once a process stays
                   healthy for restart_reset_s. Waiting is a zloop timer: no CPU spent.
        on_demand  not restarted; stopped after idle_stop_s without activity (a launch
                   or a SandboxTouch from the registry when an event waits for it).
        scheduled  not restarted; the registry starts it at its cron times; the launch
                   answers at once (a job need not serve /health).
    Every status change is a RegistryStatus notification with a sequence number that
    grows across core restarts (it starts at the wall clock in microseconds); replies to
    launch and stop carry one too, so the registry applies events in order.

    Invariants: a proc has at most one waiting caller (another request for a name with a
    caller waiting is refused with CONFLICT); every caller is answered exactly once, on
    exit at the latest. A svc has at most one proc; a svc waiting for its restart timer
    has none. At $TERM every process gets SIGTERM, then SIGKILL after the grace period,
    and every cgroup of this core is removed. */
#include "actors/sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/actor.h"
#include "core/cgroup.h"
#include "core/context.h"
#include "core/fsutil.h"
#include "envelope_cases.h"

#include <dirent.h>
#include <sodium.h>
#include <sys/stat.h>

#define HEALTH_ENDPOINT "inproc://modcore.sandbox.health"
#define OUTPUT_TAIL     4096  // output kept for a failed launch or test answer
#define STDERR_TAIL     16384 // stderr kept for the crash report
#define STDERR_LINES    50    // lines of it reported
#define MAX_EXITS       64    // exit times remembered for crash-loop detection

typedef enum { PROC_LAUNCHING, PROC_TESTING, PROC_RUNNING, PROC_STOPPING } proc_state_t;
typedef enum { POLICY_ALWAYS_ON, POLICY_ON_DEMAND, POLICY_SCHEDULED } policy_t;

typedef struct self_t self_t;
typedef struct svc_t svc_t;

//  The last cap bytes written to it.
typedef struct {
    char *data; // NUL-terminated
    size_t len; // bytes in data
    size_t cap; // most kept
} tail_t;

typedef struct {
    self_t *owner;            // the actor that runs it
    char *name;               // module name (key in self->procs)
    pid_t pid;                // the launcher, then bwrap (or the module without isolation)
    int pidfd;                // readable when the process exits; -1 if unsupported
    proc_state_t state;       // see DESIGN
    mc_request_t *caller;     // the request waiting for this proc, or NULL
    bool test_command;        // TESTING with the manifest's own test command
    char *env_path;           // <dir>/.env.module until the launcher deleted it
    char *failure;            // why a launch/test failed, reported once the process is gone
    int grace_timer;          // zloop timer id while STOPPING (SIGKILL), or -1
    int deadline_timer;       // zloop timer id of a test command's deadline, or -1
    uint32_t grace_ms;        // SIGTERM -> SIGKILL
    zmq_pollitem_t item;      // pidfd poll item registered with the loop
    zmq_pollitem_t pipes[2];  // stdout, stderr read ends (fd -1 once closed)
    char *log_path;           // <data>/logs/<name>.log
    int log_fd;               // appended to, -1 if it cannot be opened
    off_t log_size;           // its size, for rotation
    tail_t output;            // stdout + stderr since the start
    tail_t errors;            // stderr since the start
    uint32_t port;            // for health checks, 0 = none
    int64_t started_ms;       // zclock_mono at spawn
    int64_t healthy_ms;       // when it first answered 200, 0 = not yet
    bool probing;             // a periodic probe is in flight
    uint32_t health_failures; // periodic probes failed in a row
    bool idle;                // being stopped for idleness (on_demand)
    uint64_t cpu_last_ns;     // CPU time at the last sample
    int64_t cpu_last_ms;      // when it was taken
    uint64_t cpu_base_ns;     // CPU time of its cgroup when it started
    double cpu_percent;       // over the last sampling interval
    uint64_t oom_base;        // oom kills of its cgroup when it started
    svc_t *svc;               // its supervisor entry, or NULL (install tests)
} proc_t;

struct svc_t {
    self_t *owner;            // the actor
    char *name;               // module name (key in self->svcs)
    uint8_t *spec;            // packed SandboxSpec to relaunch with (holds the token)
    size_t spec_len;          // its length
    policy_t policy;          // from the spec's runtime_mode
    proc_t *proc;             // current process, or NULL while waiting to restart
    uint32_t restarts;        // automatic restarts so far
    uint32_t backoff_ms;      // delay of the next restart
    int restart_timer;        // zloop timer id, or -1
    int64_t exits[MAX_EXITS]; // zclock_mono of recent exits, oldest first
    size_t n_exits;           // entries in exits
    bool crashloop;           // in a crash loop (see DESIGN)
    int64_t last_touch_ms;    // on_demand: last activity
};

struct self_t {
    mc_context_t *ctx;     // shared context
    zsock_t *router;       // inproc://modcore.sandbox
    zsock_t *health;       // PULL: health worker reports
    zsock_t *registry;     // DEALER to the registry for status notifications
    zloop_t *loop;         // sockets, pidfds, pipes, timers
    zhashx_t *procs;       // name -> proc_t
    zhashx_t *svcs;        // name -> svc_t
    mc_cgroups_t *cgroups; // this core's cgroups
    uint64_t seq;          // last status sequence number
    int monitor_timer;     // periodic health, CPU and idle checks
};

static void s_tail_add (tail_t *tail, const char *bytes, size_t len)
{
    if (!tail->data) {
        tail->data = malloc (tail->cap + 1);
        assert (tail->data);
    }
    if (len >= tail->cap) {
        memcpy (tail->data, bytes + len - tail->cap, tail->cap);
        tail->len = tail->cap;
    } else {
        if (tail->len + len > tail->cap) {
            size_t drop = tail->len + len - tail->cap;
            memmove (tail->data, tail->data + drop, tail->len - drop);
            tail->len -= drop;
        }
        memcpy (tail->data + tail->len, bytes, len);
        tail->len += len;
    }
    tail->data[tail->len] = 0;
}

//  The last n lines of a tail (a new string).
static char *s_last_lines (const tail_t *tail, int n)
{
    if (!tail->data || tail->len == 0)
        return strdup ("");
    const char *start = tail->data;
    const char *p = tail->data + tail->len;
    if (p > start && p[-1] == '\n')
        p--;
    int lines = 0;
    while (p > start) {
        if (p[-1] == '\n' && ++lines == n)
            break;
        p--;
    }
    return strdup (p);
}

//  --- health probe (any thread) -------------------------------------------------

int mc_sandbox_probe_health (int port, int timeout_ms)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int status = -1;
    int rc = connect (fd, (struct sockaddr *)&addr, sizeof addr);
    struct pollfd pfd = {fd, POLLOUT, 0};
    if (rc != 0 && errno == EINPROGRESS && poll (&pfd, 1, timeout_ms) == 1) {
        int soerr = 0;
        socklen_t len = sizeof soerr;
        getsockopt (fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        rc = soerr ? -1 : 0;
    }
    if (rc == 0) {
        char request[128];
        int n = snprintf (request, sizeof request,
                          "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                          port);
        if (send (fd, request, (size_t)n, MSG_NOSIGNAL) == n) {
            char reply[64] = "";
            size_t have = 0;
            pfd.events = POLLIN;
            while (have < 12 && poll (&pfd, 1, timeout_ms) == 1) {
                ssize_t got = recv (fd, reply + have, sizeof reply - 1 - have, 0);
                if (got <= 0)
                    break;
                have += (size_t)got;
            }
            reply[have] = 0;
            int code = 0;
            if (sscanf (reply, "HTTP/1.%*d %d", &code) == 1)
                status = code;
        }
    }
    close (fd);
    return status;
}

typedef struct {
    char name[80];       // module
    pid_t pid;           // process being checked
    int port;            // its port
    uint32_t timeout_ms; // until a 200 (launch), or for the one probe (periodic)
    bool periodic;       // one probe of a running module
} health_job_t;

//  Worker thread: polls /health until 200, the process is gone, or the deadline (one
//  probe only when periodic).
static void *s_health_worker (void *arg)
{
    health_job_t *job = arg;
    int64_t deadline = zclock_mono () + job->timeout_ms;
    int last = -1;
    int delay = 2; // modules are often up within milliseconds: first probes come fast
    bool ok = false;
    while (zclock_mono () < deadline) {
        if (kill (job->pid, 0) != 0)
            break;
        last = mc_sandbox_probe_health (job->port, job->periodic ? (int)job->timeout_ms : 1000);
        if (last == 200 || job->periodic) {
            ok = last == 200;
            break;
        }
        zclock_sleep (delay);
        delay = delay < 200 ? delay * 2 : 200;
    }
    char reason[160];
    if (job->periodic)
        snprintf (reason, sizeof reason, "GET /health on port %d: %s", job->port,
                  last < 0 ? "no answer" : "not 200");
    else if (last < 0)
        snprintf (reason, sizeof reason, "no answer from GET /health on port %d within %u s",
                  job->port, job->timeout_ms / 1000);
    else
        snprintf (reason, sizeof reason, "GET /health on port %d answered %d, not 200, for %u s",
                  job->port, last, job->timeout_ms / 1000);
    zsock_t *push = zsock_new_push (">" HEALTH_ENDPOINT);
    if (push) {
        zsock_send (push, "sisi", job->name, (int)job->pid, ok ? "" : reason, (int)job->periodic);
        zsock_destroy (&push);
    }
    free (job);
    return NULL;
}

static void s_start_health_worker (proc_t *proc, uint32_t timeout_ms, bool periodic)
{
    health_job_t *job = calloc (1, sizeof *job);
    assert (job);
    snprintf (job->name, sizeof job->name, "%s", proc->name);
    job->pid = proc->pid;
    job->port = (int)proc->port;
    job->timeout_ms = timeout_ms;
    job->periodic = periodic;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create (&thread, &attr, s_health_worker, job) != 0) {
        zsys_error ("sandbox: cannot start a health worker");
        free (job);
    } else
        proc->probing = periodic;
    pthread_attr_destroy (&attr);
}

//  --- status notifications --------------------------------------------------------------

static uint64_t s_next_seq (self_t *self)
{
    return ++self->seq;
}

static void s_notify (self_t *self, const char *name, Mc__ModuleStatus status, const char *reason,
                      pid_t pid, uint32_t restarts, const int *exit_code, int signal,
                      const char *stderr_tail)
{
    Mc__RegistryStatus msg = MC__REGISTRY_STATUS__INIT;
    msg.name = (char *)name;
    msg.status = status;
    msg.reason = (char *)(reason ? reason : "");
    msg.pid = pid;
    msg.restarts = restarts;
    msg.exited = exit_code != NULL;
    msg.exit_code = exit_code ? *exit_code : 0;
    msg.signal = signal;
    msg.stderr_tail = (char *)(stderr_tail ? stderr_tail : "");
    msg.seq = s_next_seq (self);
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_STATUS;
    env.registry_status = &msg;
    mc_notify (self->registry, &env);
}

//  --- processes -------------------------------------------------------------------

static void s_close_pipe (self_t *self, proc_t *proc, int i)
{
    if (proc->pipes[i].fd < 0)
        return;
    zloop_poller_end (self->loop, &proc->pipes[i]);
    close (proc->pipes[i].fd);
    proc->pipes[i].fd = -1;
}

static void s_proc_destroy (void **item)
{
    proc_t *proc = *item;
    if (!proc)
        return;
    if (proc->pidfd >= 0)
        close (proc->pidfd);
    for (int i = 0; i < 2; i++)
        if (proc->pipes[i].fd >= 0) {
            zloop_poller_end (proc->owner->loop, &proc->pipes[i]);
            close (proc->pipes[i].fd);
        }
    if (proc->log_fd >= 0)
        close (proc->log_fd);
    if (proc->env_path)
        unlink (proc->env_path);
    if (proc->svc && proc->svc->proc == proc)
        proc->svc->proc = NULL;
    mc_request_destroy (&proc->caller);
    free (proc->name);
    free (proc->log_path);
    free (proc->env_path);
    free (proc->failure);
    free (proc->output.data);
    free (proc->errors.data);
    free (proc);
    *item = NULL;
}

static void s_svc_destroy (void **item)
{
    svc_t *svc = *item;
    if (!svc)
        return;
    if (svc->proc)
        svc->proc->svc = NULL;
    if (svc->spec) {
        sodium_memzero (svc->spec, svc->spec_len);
        free (svc->spec);
    }
    free (svc->name);
    free (svc);
    *item = NULL;
}

//  Forgets a module's supervision (its process, if any, is left to finish).
static void s_svc_delete (self_t *self, svc_t *svc)
{
    if (svc->restart_timer >= 0)
        zloop_timer_end (self->loop, svc->restart_timer);
    svc->restart_timer = -1;
    zhashx_delete (self->svcs, svc->name);
}

//  Renames <log> to <log>.1, <log>.1 to <log>.2, ... keeping log_keep files.
static void s_rotate_log (self_t *self, proc_t *proc)
{
    uint32_t keep = self->ctx->config->log_keep;
    if (proc->log_fd >= 0)
        close (proc->log_fd);
    char from[4200], to[4200];
    for (uint32_t i = keep; i > 1; i--) {
        snprintf (from, sizeof from, "%s.%u", proc->log_path, i - 1);
        snprintf (to, sizeof to, "%s.%u", proc->log_path, i);
        rename (from, to);
    }
    if (keep > 0) {
        snprintf (to, sizeof to, "%s.1", proc->log_path);
        rename (proc->log_path, to);
    } else
        unlink (proc->log_path);
    proc->log_fd =
        open (proc->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    proc->log_size = 0;
}

static void s_log_write (self_t *self, proc_t *proc, const char *bytes, size_t len)
{
    uint64_t max = (uint64_t)self->ctx->config->log_max_kb << 10;
    if (proc->log_fd >= 0 && proc->log_size > 0 && (uint64_t)proc->log_size + len > max)
        s_rotate_log (self, proc);
    if (proc->log_fd >= 0 && write (proc->log_fd, bytes, len) == (ssize_t)len)
        proc->log_size += (off_t)len;
}

//  Reads what is there on one output pipe. Returns false at end of file.
static bool s_read_pipe (self_t *self, proc_t *proc, int i)
{
    char buf[65536];
    for (int rounds = 0; rounds < 16; rounds++) { // bounded: a chatty module cannot hog us
        ssize_t n = read (proc->pipes[i].fd, buf, sizeof buf);
        if (n > 0) {
            s_log_write (self, proc, buf, (size_t)n);
            s_tail_add (&proc->output, buf, (size_t)n);
            if (i == 1)
                s_tail_add (&proc->errors, buf, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        return false; // end of file, or an error
    }
    return true;
}

static int s_on_pipe_data (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    proc_t *proc = arg;
    int i = item->fd == proc->pipes[0].fd ? 0 : 1;
    if (!s_read_pipe (proc->owner, proc, i))
        s_close_pipe (proc->owner, proc, i);
    return 0;
}

//  Sends sig to the module's processes. With bubblewrap, not to bwrap itself (pid):
//  bwrap does not forward signals, and its death would SIGKILL the module at once.
static void s_signal_module (self_t *self, proc_t *proc, int sig)
{
    bool isolated = strcmp (self->ctx->config->isolation, "bwrap") == 0;
    mc_cgroups_signal (self->cgroups, proc->name, sig, isolated ? proc->pid : 0);
    pid_t pids[1024];
    size_t n = mc_proc_tree_pids (proc->pid, pids, 1024);
    for (size_t i = 0; i < n; i++)
        kill (pids[i], sig);
    if (!isolated)
        kill (-proc->pid, sig);
}

//  SIGKILL of the whole tree: bwrap (its pid namespace goes with it), the group, the
//  cgroup, and any descendant.
static void s_kill_tree (self_t *self, proc_t *proc)
{
    pid_t pids[1024];
    size_t n = mc_proc_tree_pids (proc->pid, pids, 1024);
    kill (-proc->pid, SIGKILL);
    kill (proc->pid, SIGKILL);
    for (size_t i = 0; i < n; i++)
        kill (pids[i], SIGKILL);
    mc_cgroups_signal (self->cgroups, proc->name, SIGKILL, 0);
}

//  Answers the proc's waiting caller, if any, with OK or an error, and a result body.
static void s_answer (self_t *self, proc_t *proc, Mc__Status status, const char *code,
                      const char *detail, int exit_code, int signal)
{
    if (!proc->caller)
        return;
    Mc__SandboxResult result = MC__SANDBOX_RESULT__INIT;
    result.pid = proc->pid;
    result.running = proc->state == PROC_RUNNING;
    result.exit_code = exit_code;
    result.signal = signal;
    result.output = status != MC__STATUS__STATUS_OK && proc->output.data ? proc->output.data : "";
    result.seq = s_next_seq (self);
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.status = status;
    reply.error = (char *)(code ? code : "");
    reply.detail = (char *)(detail ? detail : "");
    reply.body_case = MC__ENVELOPE__BODY_SANDBOX_RESULT;
    reply.sandbox_result = &result;
    mc_reply (self->router, proc->caller->routing_id, proc->caller->env->request_id, &reply);
    mc_request_destroy (&proc->caller);
}

static int s_on_grace (zloop_t *loop, int timer_id, void *arg)
{
    proc_t *proc = arg;
    proc->grace_timer = -1;
    zsys_warning ("sandbox: %s did not stop within %u ms, killing it", proc->name, proc->grace_ms);
    s_kill_tree (proc->owner, proc);
    return 0;
}

//  SIGTERM to the module's processes, SIGKILL of the tree after grace_ms.
static void s_begin_stop (self_t *self, proc_t *proc, uint32_t grace_ms)
{
    if (proc->state == PROC_STOPPING)
        return;
    proc->state = PROC_STOPPING;
    proc->grace_ms = grace_ms;
    if (proc->deadline_timer >= 0) {
        zloop_timer_end (self->loop, proc->deadline_timer);
        proc->deadline_timer = -1;
    }
    if (grace_ms == 0)
        s_kill_tree (self, proc);
    else {
        s_signal_module (self, proc, SIGTERM);
        proc->grace_timer = zloop_timer (self->loop, grace_ms, 1, s_on_grace, proc);
    }
}

static uint64_t s_oom_kills (self_t *self, const char *name)
{
    mc_cgroup_stats_t stats;
    return mc_cgroups_stats (self->cgroups, name, &stats) == 0 ? stats.oom_kills : 0;
}

static proc_t *s_spawn (self_t *self, const Mc__SandboxSpec *spec, char *detail, size_t size);
static int s_on_restart (zloop_t *loop, int timer_id, void *arg);

//  Drops exits older than the crash-loop window and adds now.
static size_t s_count_exit (self_t *self, svc_t *svc, int64_t now)
{
    int64_t window = self->ctx->config->crashloop_window_ms;
    size_t keep = 0;
    for (size_t i = 0; i < svc->n_exits; i++)
        if (now - svc->exits[i] <= window)
            svc->exits[keep++] = svc->exits[i];
    if (keep == MAX_EXITS) {
        memmove (svc->exits, svc->exits + 1, (MAX_EXITS - 1) * sizeof svc->exits[0]);
        keep--;
    }
    svc->exits[keep++] = now;
    svc->n_exits = keep;
    return keep;
}

//  A supervised process ended (how says how): restart, report, or forget, by policy.
static void s_supervise_exit (self_t *self, svc_t *svc, proc_t *proc, int exit_code, int signal,
                              const char *how)
{
    const mc_config_t *cfg = self->ctx->config;
    char *tail = s_last_lines (&proc->errors, STDERR_LINES);
    char reason[512];
    if (proc->idle) {
        snprintf (reason, sizeof reason, "stopped after %u s without activity (on_demand)",
                  cfg->idle_stop_ms / 1000);
        s_notify (self, svc->name, MC__MODULE_STATUS__MODULE_STOPPED, reason, 0, svc->restarts,
                  NULL, 0, NULL);
        s_svc_delete (self, svc);
    } else if (svc->policy != POLICY_ALWAYS_ON) {
        bool clean = exit_code == 0 && signal == 0;
        snprintf (reason, sizeof reason, "%s%s",
                  svc->policy == POLICY_SCHEDULED ? "run ended: " : "", how);
        s_notify (self, svc->name,
                  clean ? MC__MODULE_STATUS__MODULE_STOPPED : MC__MODULE_STATUS__MODULE_FAILED,
                  reason, 0, svc->restarts, &exit_code, signal, tail);
        s_svc_delete (self, svc);
    } else {
        int64_t now = zclock_mono ();
        if (proc->healthy_ms && now - proc->healthy_ms >= (int64_t)cfg->restart_reset_ms) {
            svc->backoff_ms = cfg->restart_base_ms; // it had been fine for long enough
            svc->crashloop = false;
            svc->n_exits = 0;
        }
        size_t exits = s_count_exit (self, svc, now);
        if (exits >= cfg->crashloop_exits && !svc->crashloop) {
            svc->crashloop = true;
            zsys_warning ("sandbox: %s is crash-looping: %zu exits within %u s", svc->name, exits,
                          cfg->crashloop_window_ms / 1000);
        }
        uint32_t delay = svc->backoff_ms;
        svc->backoff_ms =
            svc->backoff_ms >= cfg->restart_max_ms / 2 ? cfg->restart_max_ms : svc->backoff_ms * 2;
        if (delay > cfg->restart_max_ms)
            delay = cfg->restart_max_ms;
        svc->restart_timer = zloop_timer (self->loop, delay, 1, s_on_restart, svc);
        if (svc->crashloop)
            snprintf (reason, sizeof reason,
                      "crash loop: %zu exits within %u s; last %s; restart %u in %.1f s", exits,
                      cfg->crashloop_window_ms / 1000, how, svc->restarts + 1, delay / 1000.0);
        else
            snprintf (reason, sizeof reason, "%s; restart %u in %.1f s", how, svc->restarts + 1,
                      delay / 1000.0);
        zsys_info ("sandbox: %s: %s", svc->name, reason);
        s_notify (self, svc->name,
                  svc->crashloop ? MC__MODULE_STATUS__MODULE_CRASHLOOP
                                 : MC__MODULE_STATUS__MODULE_STARTING,
                  reason, 0, svc->restarts, &exit_code, signal, tail);
    }
    free (tail);
}

//  The process has exited with wait status: answer or report, then forget it.
static void s_on_exit (self_t *self, proc_t *proc, int wstatus)
{
    int exit_code = WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1;
    int signal = WIFSIGNALED (wstatus) ? WTERMSIG (wstatus) : 0;
    //  bubblewrap reports a module killed by signal N as exit status 128 + N.
    if (strcmp (self->ctx->config->isolation, "bwrap") == 0 && exit_code > 128 &&
        exit_code <= 128 + 64) {
        signal = exit_code - 128;
        exit_code = -1;
    }
    //  The namespace died with bwrap; anything else of the tree goes now, none may stay.
    s_kill_tree (self, proc);
    for (int i = 0; i < 2; i++)
        if (proc->pipes[i].fd >= 0) {
            s_read_pipe (self, proc, i); // what it wrote last
            s_close_pipe (self, proc, i);
        }
    if (proc->grace_timer >= 0)
        zloop_timer_end (self->loop, proc->grace_timer);
    if (proc->deadline_timer >= 0)
        zloop_timer_end (self->loop, proc->deadline_timer);
    proc->grace_timer = proc->deadline_timer = -1;
    if (proc->pidfd >= 0)
        zloop_poller_end (self->loop, &proc->item);

    char how[200];
    if (signal)
        snprintf (how, sizeof how, "killed by signal %d (%s)", signal, strsignal (signal));
    else
        snprintf (how, sizeof how, "exited with code %d", exit_code);
    uint64_t ooms = s_oom_kills (self, proc->name);
    if (ooms > proc->oom_base)
        snprintf (how + strlen (how), sizeof how - strlen (how),
                  " after the kernel killed %llu process(es) at its memory limit",
                  (unsigned long long)(ooms - proc->oom_base));

    switch (proc->state) {
        case PROC_LAUNCHING:
            s_answer (self, proc, MC__STATUS__STATUS_INVALID, "MODULE_EXITED", how, exit_code,
                      signal);
            break;
        case PROC_TESTING:
            if (proc->test_command && exit_code == 0 && signal == 0)
                s_answer (self, proc, MC__STATUS__STATUS_OK, NULL, NULL, 0, 0);
            else
                s_answer (self, proc, MC__STATUS__STATUS_INVALID, "SANDBOX_TEST_FAILED", how,
                          exit_code, signal);
            break;
        case PROC_RUNNING:
            zsys_warning ("sandbox: %s (pid %d) %s", proc->name, proc->pid, how);
            break;
        case PROC_STOPPING:
            if (proc->failure)
                s_answer (self, proc, MC__STATUS__STATUS_INVALID, "MODULE_UNHEALTHY", proc->failure,
                          exit_code, signal);
            else
                s_answer (self, proc, MC__STATUS__STATUS_OK, NULL, NULL, exit_code, signal);
            break;
    }
    zsys_debug ("sandbox: %s (pid %d) is gone", proc->name, proc->pid);
    svc_t *svc = proc->svc;
    if (svc) {
        //  An unhealthy or failed start says why rather than how it ended.
        s_supervise_exit (self, svc, proc, exit_code, signal, proc->failure ? proc->failure : how);
        svc = zhashx_lookup (self->svcs, proc->name); // NULL if it was forgotten
    }
    if (!svc)
        mc_cgroups_remove (self->cgroups, proc->name);
    zhashx_delete (self->procs, proc->name);
}

//  Reaps proc if it has exited; returns true if it did.
static bool s_try_reap (self_t *self, proc_t *proc)
{
    int wstatus = 0;
    pid_t rc = waitpid (proc->pid, &wstatus, WNOHANG);
    if (rc == proc->pid || (rc < 0 && errno == ECHILD)) {
        s_on_exit (self, proc, rc == proc->pid ? wstatus : 0);
        return true;
    }
    return false;
}

static int s_on_pidfd (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    proc_t *proc = arg;
    s_try_reap (proc->owner, proc);
    return 0;
}

//  Without pidfds (old kernels) exits are found by a periodic reap.
static int s_on_reap_timer (zloop_t *loop, int timer_id, void *arg)
{
    self_t *self = arg;
    zlistx_t *names = zhashx_keys (self->procs);
    for (char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        proc_t *proc = zhashx_lookup (self->procs, name);
        if (proc && proc->pidfd < 0)
            s_try_reap (self, proc);
    }
    zlistx_destroy (&names);
    return 0;
}

//  Writes the environment file. Values may not contain newlines (they would split a
//  line); NUL cannot occur in protobuf strings we accept as text.
static int s_write_env (const char *path, const Mc__SandboxSpec *spec)
{
    size_t total = 0;
    for (size_t i = 0; i < spec->n_env; i++) {
        if (strchr (spec->env[i], '\n') || !strchr (spec->env[i], '='))
            return -1;
        total += strlen (spec->env[i]) + 1;
    }
    char *text = malloc (total + 1);
    assert (text);
    char *p = text;
    for (size_t i = 0; i < spec->n_env; i++)
        p += sprintf (p, "%s\n", spec->env[i]);
    unlink (path);
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int rc = -1;
    if (fd >= 0) {
        rc = write (fd, text, total) == (ssize_t)total ? 0 : -1;
        close (fd);
    }
    sodium_memzero (text, total);
    free (text);
    return rc;
}

//  Starts spec through the launcher. Returns the new proc (registered) or NULL with
//  detail filled.
//  True if nothing listens on 127.0.0.1:port (a bind succeeds; TIME_WAIT is no obstacle).
static bool s_port_free (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; // cannot tell: let the launch find out
    int one = 1;
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    bool free_port = bind (fd, (struct sockaddr *)&addr, sizeof addr) == 0 || errno != EADDRINUSE;
    close (fd);
    return free_port;
}

static proc_t *s_spawn (self_t *self, const Mc__SandboxSpec *spec, char *detail, size_t size)
{
    const mc_config_t *cfg = self->ctx->config;
    if (!spec || !spec->name || !*spec->name || !spec->dir || !*spec->dir || spec->n_argv == 0) {
        snprintf (detail, size, "incomplete process spec");
        return NULL;
    }
    for (size_t i = 0; i < spec->n_argv; i++)
        if (!spec->argv[i]) {
            snprintf (detail, size, "incomplete process spec");
            return NULL;
        }
    //  A port another program holds would let that program answer our health checks.
    if (spec->port > 0 && !s_port_free ((int)spec->port)) {
        snprintf (detail, size, "port %u on 127.0.0.1 is already in use by another program",
                  spec->port);
        return NULL;
    }
    proc_t *proc = calloc (1, sizeof *proc);
    assert (proc);
    proc->owner = self;
    proc->name = strdup (spec->name);
    proc->pidfd = -1;
    proc->log_fd = -1;
    proc->pipes[0].fd = proc->pipes[1].fd = -1;
    proc->grace_timer = -1;
    proc->deadline_timer = -1;
    proc->port = spec->port;
    proc->output.cap = OUTPUT_TAIL;
    proc->errors.cap = STDERR_TAIL;
    if (asprintf (&proc->env_path, "%s/.env.module", spec->dir) < 0 ||
        asprintf (&proc->log_path, "%s",
                  spec->log_path && *spec->log_path ? spec->log_path : "/dev/null") < 0)
        abort ();
    proc->log_fd =
        open (proc->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    struct stat st;
    if (proc->log_fd >= 0 && fstat (proc->log_fd, &st) == 0)
        proc->log_size = S_ISREG (st.st_mode) ? st.st_size : 0;

    //  Its cgroups, limited, before anything runs.
    mc_cgroup_limits_t limits = {
        .memory_bytes = (uint64_t)(spec->memory_mb > 0 ? (uint32_t)spec->memory_mb : cfg->memory_mb)
                        << 20,
        .pids = cfg->pids_max,
        .cpu = spec->cpu > 0 ? spec->cpu : cfg->cpu_percent / 100.0,
    };
    char groups[4][4096];
    int n_groups = mc_cgroups_prepare (self->cgroups, spec->name, &limits, groups, 4);
    if (n_groups < 0) {
        snprintf (detail, size, "cannot prepare the cgroups of %s", spec->name);
        s_proc_destroy ((void **)&proc);
        return NULL;
    }
    mc_cgroup_stats_t base;
    if (mc_cgroups_stats (self->cgroups, spec->name, &base) == 0) {
        proc->cpu_base_ns = base.cpu_ns;
        proc->oom_base = base.oom_kills;
    }
    if (s_write_env (proc->env_path, spec) != 0) {
        snprintf (detail, size, "cannot write %s: %s", proc->env_path, strerror (errno));
        s_proc_destroy ((void **)&proc);
        return NULL;
    }
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2 (out, O_CLOEXEC) != 0 || pipe2 (err, O_CLOEXEC) != 0) {
        snprintf (detail, size, "cannot make output pipes: %s", strerror (errno));
        for (int i = 0; i < 2; i++) {
            if (out[i] >= 0)
                close (out[i]);
            if (err[i] >= 0)
                close (err[i]);
        }
        s_proc_destroy ((void **)&proc);
        return NULL;
    }

    //  argv: launcher options, then the module's own argv.
    size_t argc = 0;
    char *argv[spec->n_argv + 64];
    char parent[16], user[48], tmp_mb[16], nofile[16], nproc[16], fsize[16], data_mb[16];
    snprintf (parent, sizeof parent, "%d", (int)getpid ());
    snprintf (user, sizeof user, "%ld:%ld", cfg->module_uid, cfg->module_gid);
    snprintf (tmp_mb, sizeof tmp_mb, "%u", cfg->tmp_mb);
    snprintf (nofile, sizeof nofile, "%u", cfg->nofile);
    snprintf (nproc, sizeof nproc, "%u", cfg->nproc);
    snprintf (fsize, sizeof fsize, "%u", cfg->fsize_mb);
    snprintf (data_mb, sizeof data_mb, "%llu", (unsigned long long)(limits.memory_bytes >> 20));
    argv[argc++] = (char *)cfg->launcher;
    argv[argc++] = "--env-file";
    argv[argc++] = proc->env_path;
    argv[argc++] = "--dir";
    argv[argc++] = spec->dir;
    argv[argc++] = "--parent";
    argv[argc++] = parent;
    if (strcmp (cfg->isolation, "bwrap") == 0) {
        argv[argc++] = "--bwrap";
        argv[argc++] = cfg->bwrap;
        argv[argc++] = "--data";
        argv[argc++] = cfg->data_dir;
        argv[argc++] = "--network";
        argv[argc++] = spec->network_none ? "none" : "loopback";
        argv[argc++] = "--tmp-mb";
        argv[argc++] = tmp_mb;
        if (cfg->config_path) {
            argv[argc++] = "--hide";
            argv[argc++] = cfg->config_path;
        }
    }
    for (int i = 0; i < n_groups; i++) {
        argv[argc++] = "--cgroup";
        argv[argc++] = groups[i];
    }
    if (cfg->module_uid >= 0) {
        argv[argc++] = "--user";
        argv[argc++] = user;
    }
    argv[argc++] = "--nofile";
    argv[argc++] = nofile;
    argv[argc++] = "--nproc";
    argv[argc++] = nproc;
    argv[argc++] = "--fsize-mb";
    argv[argc++] = fsize;
    if (mc_cgroups_mode (self->cgroups) == MC_CGROUP_NONE) {
        argv[argc++] = "--data-mb"; // no memory cgroup: the data segment is the limit
        argv[argc++] = data_mb;
    }
    argv[argc++] = "--";
    for (size_t i = 0; i < spec->n_argv; i++)
        argv[argc++] = spec->argv[i];
    argv[argc] = NULL;

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2 (&actions, err[1], STDERR_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init (&attr);
    sigset_t none, all;
    sigemptyset (&none);
    sigfillset (&all);
    posix_spawnattr_setsigmask (&attr, &none);
    posix_spawnattr_setsigdefault (&attr, &all);
    posix_spawnattr_setflags (&attr,
                              POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *empty_env[] = {NULL};
    int rc = posix_spawn (&proc->pid, argv[0], &actions, &attr, argv, empty_env);
    posix_spawnattr_destroy (&attr);
    posix_spawn_file_actions_destroy (&actions);
    close (out[1]);
    close (err[1]);
    if (rc != 0) {
        close (out[0]);
        close (err[0]);
        snprintf (detail, size, "cannot start %s: %s", argv[0], strerror (rc));
        s_proc_destroy ((void **)&proc);
        return NULL;
    }
    proc->started_ms = proc->cpu_last_ms = zclock_mono ();
    int fds[2] = {out[0], err[0]};
    for (int i = 0; i < 2; i++) {
        fcntl (fds[i], F_SETFL, O_NONBLOCK);
        proc->pipes[i] = (zmq_pollitem_t){NULL, fds[i], ZMQ_POLLIN, 0};
        zloop_poller (self->loop, &proc->pipes[i], s_on_pipe_data, proc);
        zloop_poller_set_tolerant (self->loop, &proc->pipes[i]); // hang-up is end of file
    }
    proc->pidfd = (int)syscall (SYS_pidfd_open, proc->pid, 0);
    if (proc->pidfd >= 0) {
        proc->item = (zmq_pollitem_t){NULL, proc->pidfd, ZMQ_POLLIN, 0};
        zloop_poller (self->loop, &proc->item, s_on_pidfd, proc);
    }
    zhashx_insert (self->procs, proc->name, proc);
    zsys_info ("sandbox: started %s (pid %d): %s", proc->name, proc->pid, spec->argv[0]);
    return proc;
}

static int s_on_test_deadline (zloop_t *loop, int timer_id, void *arg)
{
    proc_t *proc = arg;
    proc->deadline_timer = -1;
    free (proc->failure);
    proc->failure = strdup ("the sandbox test did not finish within its time limit");
    s_begin_stop (proc->owner, proc, 0);
    return 0;
}

static int s_on_survived (zloop_t *loop, int timer_id, void *arg)
{
    proc_t *proc = arg;
    proc->deadline_timer = -1;
    s_begin_stop (proc->owner, proc, proc->grace_ms);
    return 0;
}

static policy_t s_policy (const char *runtime_mode)
{
    if (runtime_mode && strcmp (runtime_mode, "on_demand") == 0)
        return POLICY_ON_DEMAND;
    if (runtime_mode && strcmp (runtime_mode, "scheduled") == 0)
        return POLICY_SCHEDULED;
    return POLICY_ALWAYS_ON;
}

//  The process became healthy (or needs no check): RUNNING, and the registry is told
//  when nobody waits for the answer (a restart).
static void s_became_running (self_t *self, proc_t *proc)
{
    proc->state = PROC_RUNNING;
    proc->healthy_ms = zclock_mono ();
    proc->health_failures = 0;
    zsys_info ("sandbox: %s (pid %d) is running", proc->name, proc->pid);
    if (proc->caller)
        s_answer (self, proc, MC__STATUS__STATUS_OK, NULL, NULL, 0, 0);
    else if (proc->svc) {
        char reason[96] = "";
        if (proc->svc->restarts)
            snprintf (reason, sizeof reason, "restarted automatically (%u restart%s)",
                      proc->svc->restarts, proc->svc->restarts == 1 ? "" : "s");
        s_notify (self, proc->name, MC__MODULE_STATUS__MODULE_RUNNING, reason, proc->pid,
                  proc->svc->restarts, NULL, 0, NULL);
    }
}

//  Starts the svc's process from its spec: waits for health (or not, by policy).
static proc_t *s_svc_start (self_t *self, svc_t *svc, char *detail, size_t size)
{
    Mc__SandboxSpec *spec = mc__sandbox_spec__unpack (NULL, svc->spec_len, svc->spec);
    if (!spec) {
        snprintf (detail, size, "cannot read the stored launch spec");
        return NULL;
    }
    proc_t *proc = s_spawn (self, spec, detail, size);
    uint32_t timeout =
        spec->health_timeout_ms ? spec->health_timeout_ms : self->ctx->config->health_timeout_ms;
    mc__sandbox_spec__free_unpacked (spec, NULL);
    if (!proc)
        return NULL;
    proc->svc = svc;
    svc->proc = proc;
    svc->last_touch_ms = zclock_mono ();
    proc->grace_ms = self->ctx->config->stop_grace_ms;
    proc->state = PROC_LAUNCHING;
    if (proc->port > 0 && svc->policy != POLICY_SCHEDULED)
        s_start_health_worker (proc, timeout, false);
    return proc;
}

//  The backoff is over: start again. A start that fails at once counts as an exit.
static int s_on_restart (zloop_t *loop, int timer_id, void *arg)
{
    svc_t *svc = arg;
    self_t *self = svc->owner;
    svc->restart_timer = -1;
    svc->restarts++;
    char detail[512];
    proc_t *proc = s_svc_start (self, svc, detail, sizeof detail);
    if (!proc) {
        zsys_error ("sandbox: cannot restart %s: %s", svc->name, detail);
        proc_t ghost = {.owner = self, .name = svc->name, .svc = svc};
        ghost.errors.cap = STDERR_TAIL;
        s_supervise_exit (self, svc, &ghost, 127, 0, detail);
        return 0;
    }
    if (proc->state == PROC_LAUNCHING && (proc->port == 0 || svc->policy == POLICY_SCHEDULED))
        s_became_running (self, proc);
    return 0;
}

//  A svc for spec (new, or the waiting one of that name with a fresh spec).
static svc_t *s_svc_for (self_t *self, const Mc__SandboxSpec *spec)
{
    svc_t *svc = zhashx_lookup (self->svcs, spec->name);
    if (!svc) {
        svc = calloc (1, sizeof *svc);
        assert (svc);
        svc->owner = self;
        svc->name = strdup (spec->name);
        svc->restart_timer = -1;
        svc->backoff_ms = self->ctx->config->restart_base_ms;
        zhashx_insert (self->svcs, svc->name, svc);
    }
    if (svc->restart_timer >= 0) // an operator's start does not wait for the backoff
        zloop_timer_end (self->loop, svc->restart_timer);
    svc->restart_timer = -1;
    if (svc->spec) {
        sodium_memzero (svc->spec, svc->spec_len);
        free (svc->spec);
    }
    svc->spec_len = mc__sandbox_spec__get_packed_size (spec);
    svc->spec = malloc (svc->spec_len ? svc->spec_len : 1);
    assert (svc->spec);
    mc__sandbox_spec__pack (spec, svc->spec);
    svc->policy = s_policy (spec->runtime_mode);
    svc->restarts = 0;
    return svc;
}

static void s_handle_launch (self_t *self, mc_request_t *req, bool test)
{
    const Mc__SandboxSpec *spec =
        test ? (req->env->sandbox_test ? req->env->sandbox_test->spec : NULL)
             : req->env->sandbox_launch->spec;
    proc_t *running = spec && spec->name ? zhashx_lookup (self->procs, spec->name) : NULL;
    if (running && !test && running->svc && !running->caller &&
        (running->state == PROC_RUNNING || running->state == PROC_LAUNCHING)) {
        //  Started again while it runs (or restarts): the answer is its current state.
        running->caller = req;
        if (running->state == PROC_RUNNING)
            s_answer (self, running, MC__STATUS__STATUS_OK, NULL, NULL, 0, 0);
        return;
    }
    if (running) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_CONFLICT, "ALREADY_RUNNING",
                        "module %s already has a process", spec->name);
        mc_request_destroy (&req);
        return;
    }
    char detail[512];
    proc_t *proc = NULL;
    if (test)
        proc = s_spawn (self, spec, detail, sizeof detail);
    else if (spec && spec->name && *spec->name) {
        svc_t *svc = s_svc_for (self, spec);
        proc = s_svc_start (self, svc, detail, sizeof detail);
        if (!proc)
            s_svc_delete (self, svc);
    } else
        snprintf (detail, sizeof detail, "incomplete process spec");
    if (!proc) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "SPAWN_FAILED", "%s", detail);
        mc_request_destroy (&req);
        return;
    }
    proc->grace_ms = self->ctx->config->stop_grace_ms;
    proc->caller = req;
    if (!test) {
        //  Nothing to wait for: a portless SYSTEM module, or a scheduled job.
        if (proc->port == 0 || proc->svc->policy == POLICY_SCHEDULED)
            s_became_running (self, proc);
        return;
    }
    proc->state = PROC_TESTING;
    uint32_t timeout = req->env->sandbox_test->timeout_ms;
    if (timeout == 0)
        timeout = self->ctx->config->sandbox_test_ms;
    //  A test with its own command waits for its exit (0 = pass). Otherwise a test is
    //  "starts and answers /health" like a launch, or, for a module without a port,
    //  "is still running after a second".
    proc->test_command = req->env->sandbox_test->wait_exit;
    if (proc->test_command)
        proc->deadline_timer = zloop_timer (self->loop, timeout, 1, s_on_test_deadline, proc);
    else if (spec->port > 0)
        s_start_health_worker (proc, timeout, false);
    else
        proc->deadline_timer = zloop_timer (self->loop, 1000, 1, s_on_survived, proc);
}

static void s_reply_result (self_t *self, mc_request_t *req, Mc__SandboxResult *result)
{
    result->seq = s_next_seq (self);
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_SANDBOX_RESULT;
    reply.sandbox_result = result;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
}

static void s_handle_stop (self_t *self, mc_request_t *req)
{
    const char *name = req->env->sandbox_stop->name;
    svc_t *svc = name ? zhashx_lookup (self->svcs, name) : NULL;
    if (svc)
        s_svc_delete (self, svc); // no restart after this stop
    proc_t *proc = name ? zhashx_lookup (self->procs, name) : NULL;
    if (!proc) {
        if (name)
            mc_cgroups_remove (self->cgroups, name);
        Mc__SandboxResult result = MC__SANDBOX_RESULT__INIT;
        s_reply_result (self, req, &result);
        mc_request_destroy (&req);
        return;
    }
    if (proc->caller) {
        if (proc->state == PROC_STOPPING) {
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_CONFLICT, "BUSY", "%s is already stopping", name);
            mc_request_destroy (&req);
            return;
        }
        s_answer (self, proc, MC__STATUS__STATUS_CONFLICT, "STOPPED",
                  "stopped before it became healthy", -1, 0);
    }
    free (proc->failure);
    proc->failure = NULL;
    proc->caller = req;
    uint32_t grace = req->env->sandbox_stop->grace_ms;
    if (proc->state == PROC_STOPPING) // already on its way (unhealthy, idle): just wait
        return;
    s_begin_stop (self, proc, grace ? grace : self->ctx->config->stop_grace_ms);
}

//  Resource use of one module (proc may be NULL: waiting to restart).
static Mc__SandboxUsage *s_usage (self_t *self, const char *name, proc_t *proc, svc_t *svc)
{
    Mc__SandboxUsage *u = calloc (1, sizeof *u);
    assert (u);
    mc__sandbox_usage__init (u);
    u->name = (char *)name;
    u->restarts = svc ? svc->restarts : 0;
    if (!proc) {
        u->state = svc && svc->crashloop ? "crashloop" : "backoff";
        return u;
    }
    static const char *const states[] = {"starting", "testing", "running", "stopping"};
    u->state = (char *)states[proc->state];
    u->pid = proc->pid;
    mc_cgroup_stats_t stats;
    if (mc_cgroups_stats (self->cgroups, name, &stats) == 0) {
        u->rss_bytes = stats.rss_bytes;
        u->pids = stats.pids;
        u->cpu_ns = stats.cpu_ns > proc->cpu_base_ns ? stats.cpu_ns - proc->cpu_base_ns : 0;
        u->oom_kills = stats.oom_kills - proc->oom_base;
    } else if (mc_proc_tree_stats (proc->pid, &stats) == 0) {
        u->rss_bytes = stats.rss_bytes;
        u->pids = stats.pids;
        u->cpu_ns = stats.cpu_ns;
    }
    int64_t now = zclock_mono ();
    if (proc->cpu_last_ms > proc->started_ms)
        u->cpu_percent = proc->cpu_percent;
    else if (now > proc->started_ms) // not sampled yet: the average since the start
        u->cpu_percent = (double)u->cpu_ns / 1e6 / (double)(now - proc->started_ms) * 100.0;
    u->uptime_s =
        proc->state == PROC_RUNNING && proc->healthy_ms ? (now - proc->healthy_ms) / 1000 : 0;
    return u;
}

static void s_handle_status (self_t *self, mc_request_t *req)
{
    const char *name = req->env->sandbox_status->name;
    Mc__SandboxResult result = MC__SANDBOX_RESULT__INIT;
    zlistx_t *names = zlistx_new ();
    zlistx_set_destructor (names, (zlistx_destructor_fn *)zstr_free);
    zlistx_set_duplicator (names, (zlistx_duplicator_fn *)strdup);
    if (name && *name)
        zlistx_add_end (names, (void *)name);
    else {
        for (proc_t *p = zhashx_first (self->procs); p; p = zhashx_next (self->procs))
            zlistx_add_end (names, p->name);
        for (svc_t *s = zhashx_first (self->svcs); s; s = zhashx_next (self->svcs))
            if (!s->proc)
                zlistx_add_end (names, s->name);
    }
    size_t n = zlistx_size (names);
    Mc__SandboxUsage **usage = calloc (n + 1, sizeof *usage);
    assert (usage);
    for (const char *each = zlistx_first (names); each; each = zlistx_next (names)) {
        proc_t *proc = zhashx_lookup (self->procs, each);
        svc_t *svc = zhashx_lookup (self->svcs, each);
        if (proc || svc)
            usage[result.n_usage++] = s_usage (self, each, proc, svc);
    }
    proc_t *proc = name && *name ? zhashx_lookup (self->procs, name) : NULL;
    if (proc) {
        result.pid = proc->pid;
        result.running = proc->state == PROC_RUNNING;
    }
    result.usage = usage;
    s_reply_result (self, req, &result);
    for (size_t i = 0; i < result.n_usage; i++)
        free (usage[i]);
    free (usage);
    zlistx_destroy (&names);
}

static int s_on_request (zloop_t *loop, zsock_t *reader, void *arg)
{
    self_t *self = arg;
    mc_request_t *req = mc_request_recv (self->router);
    if (!req)
        return 0;
    switch (req->env->body_case) {
        //  These keep req as the proc's caller, or answer and free it themselves.
        case MC__ENVELOPE__BODY_SANDBOX_LAUNCH:
            s_handle_launch (self, req, false);
            return 0;
        case MC__ENVELOPE__BODY_SANDBOX_TEST:
            s_handle_launch (self, req, true);
            return 0;
        case MC__ENVELOPE__BODY_SANDBOX_STOP:
            s_handle_stop (self, req);
            return 0;
        case MC__ENVELOPE__BODY_SANDBOX_STATUS:
            s_handle_status (self, req);
            break;
        case MC__ENVELOPE__BODY_SANDBOX_TOUCH: {
            const char *name = req->env->sandbox_touch->name;
            svc_t *svc = name ? zhashx_lookup (self->svcs, name) : NULL;
            if (svc)
                svc->last_touch_ms = zclock_mono ();
            break;
        }
            MC_CASES_NOT_FOR_SANDBOX
            mc_reply_error (self->router, req->routing_id, req->env->request_id,
                            MC__STATUS__STATUS_BAD_REQUEST, "UNSUPPORTED",
                            "sandbox does not handle this message");
            break;
    }
    mc_request_destroy (&req);
    return 0;
}

//  A health worker's verdict: reason is empty when /health answered 200.
static int s_on_health (zloop_t *loop, zsock_t *reader, void *arg)
{
    self_t *self = arg;
    const mc_config_t *cfg = self->ctx->config;
    char *name = NULL, *reason = NULL;
    int pid = 0, periodic = 0;
    if (zsock_recv (self->health, "sisi", &name, &pid, &reason, &periodic) != 0)
        return 0;
    proc_t *proc = name ? zhashx_lookup (self->procs, name) : NULL;
    bool ok = reason && !*reason;
    if (proc && proc->pid == pid && periodic) {
        proc->probing = false;
        if (proc->state == PROC_RUNNING && ok)
            proc->health_failures = 0;
        else if (proc->state == PROC_RUNNING && ++proc->health_failures >= cfg->health_failures) {
            free (proc->failure);
            if (asprintf (&proc->failure,
                          "restarted: GET /health failed %u times in a row (last: %s)",
                          proc->health_failures, reason) < 0)
                abort ();
            zsys_warning ("sandbox: %s: %s", proc->name, proc->failure);
            s_begin_stop (self, proc, proc->grace_ms);
        }
    } else if (proc && proc->pid == pid) {
        if (proc->state == PROC_LAUNCHING && ok)
            s_became_running (self, proc);
        else if (proc->state == PROC_LAUNCHING || proc->state == PROC_TESTING) {
            if (!ok) {
                free (proc->failure);
                proc->failure = strdup (reason);
            }
            s_begin_stop (self, proc, ok ? proc->grace_ms : 0);
        }
    }
    zstr_free (&name);
    zstr_free (&reason);
    return 0;
}

//  Every health_interval: CPU samples, periodic health probes, crash-loop recovery,
//  idle stops.
static int s_on_monitor (zloop_t *loop, int timer_id, void *arg)
{
    self_t *self = arg;
    const mc_config_t *cfg = self->ctx->config;
    int64_t now = zclock_mono ();
    zlistx_t *names = zhashx_keys (self->procs);
    for (char *name = zlistx_first (names); name; name = zlistx_next (names)) {
        proc_t *proc = zhashx_lookup (self->procs, name);
        svc_t *svc = proc ? proc->svc : NULL;
        if (!proc)
            continue;
        mc_cgroup_stats_t stats;
        bool have = mc_cgroups_stats (self->cgroups, name, &stats) == 0;
        if (!have)
            have = mc_proc_tree_stats (proc->pid, &stats) == 0;
        if (have && now > proc->cpu_last_ms) {
            uint64_t used = stats.cpu_ns > proc->cpu_last_ns ? stats.cpu_ns - proc->cpu_last_ns : 0;
            if (proc->cpu_last_ns == 0 && mc_cgroups_mode (self->cgroups) != MC_CGROUP_NONE)
                used = stats.cpu_ns > proc->cpu_base_ns ? stats.cpu_ns - proc->cpu_base_ns : 0;
            proc->cpu_percent = (double)used / 1e6 / (double)(now - proc->cpu_last_ms) * 100.0;
            proc->cpu_last_ns = stats.cpu_ns;
            proc->cpu_last_ms = now;
        }
        if (!svc || proc->state != PROC_RUNNING)
            continue;
        if (proc->port > 0 && svc->policy != POLICY_SCHEDULED && !proc->probing &&
            now - proc->started_ms >= (int64_t)cfg->health_grace_ms) {
            uint32_t timeout = cfg->health_interval_ms < 5000 ? cfg->health_interval_ms : 5000;
            s_start_health_worker (proc, timeout, true);
        }
        if (svc->crashloop && proc->healthy_ms &&
            now - proc->healthy_ms >= (int64_t)cfg->restart_reset_ms) {
            svc->crashloop = false;
            svc->n_exits = 0;
            svc->backoff_ms = cfg->restart_base_ms;
            zsys_info ("sandbox: %s has been healthy for %u s: crash loop over", name,
                       cfg->restart_reset_ms / 1000);
        }
        if (svc->policy == POLICY_ON_DEMAND &&
            now - svc->last_touch_ms >= (int64_t)cfg->idle_stop_ms) {
            zsys_info ("sandbox: %s idle for %u s, stopping it", name, cfg->idle_stop_ms / 1000);
            proc->idle = true;
            s_begin_stop (self, proc, proc->grace_ms);
        }
    }
    zlistx_destroy (&names);
    return 0;
}

//  Stops every process: SIGTERM to all modules, wait up to the grace period, SIGKILL;
//  then removes this core's cgroups.
static void s_stop_all (self_t *self)
{
    zhashx_purge (self->svcs); // nothing restarts from here on
    size_t count = zhashx_size (self->procs);
    if (count > 0)
        zsys_info ("sandbox: stopping %zu module processes", count);
    for (proc_t *proc = zhashx_first (self->procs); proc; proc = zhashx_next (self->procs))
        s_signal_module (self, proc, SIGTERM);
    int64_t deadline = zclock_mono () + self->ctx->config->stop_grace_ms;
    while (zhashx_size (self->procs) > 0) {
        bool late = zclock_mono () >= deadline;
        zlistx_t *names = zhashx_keys (self->procs);
        for (char *name = zlistx_first (names); name; name = zlistx_next (names)) {
            proc_t *proc = zhashx_lookup (self->procs, name);
            if (late)
                s_kill_tree (self, proc);
            proc->state = PROC_STOPPING;
            if (proc->caller) {
                s_answer (self, proc, MC__STATUS__STATUS_UNAVAILABLE, "SHUTTING_DOWN",
                          "the core is stopping", -1, 0);
            }
            int wstatus;
            pid_t rc = waitpid (proc->pid, &wstatus, late ? 0 : WNOHANG);
            if (rc == proc->pid || (rc < 0 && errno == ECHILD)) {
                s_kill_tree (self, proc);
                for (int i = 0; i < 2; i++)
                    if (proc->pipes[i].fd >= 0)
                        s_read_pipe (self, proc, i);
                zhashx_delete (self->procs, name);
            }
        }
        zlistx_destroy (&names);
        if (zhashx_size (self->procs) > 0)
            zclock_sleep (20);
    }
    mc_cgroups_cleanup (self->cgroups);
    mc_cgroups_release (self->cgroups);
}

//  A core that was killed may have left .env.module files (a launch it did not see
//  through); their secrets must not stay on disk.
static void s_remove_stray_env_files (self_t *self)
{
    char path[4200];
    snprintf (path, sizeof path, "%s/modules", self->ctx->config->data_dir);
    DIR *dir = opendir (path);
    struct dirent *e;
    while (dir && (e = readdir (dir))) {
        if (e->d_name[0] == '.')
            continue;
        char env[4600];
        snprintf (env, sizeof env, "%s/%s/.env.module", path, e->d_name);
        if (unlink (env) == 0)
            zsys_info ("sandbox: removed a stray %s", env);
    }
    if (dir)
        closedir (dir);
}

static self_t *s_self_new (mc_context_t *ctx)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = ctx;
    self->procs = zhashx_new ();
    zhashx_set_destructor (self->procs, s_proc_destroy);
    self->svcs = zhashx_new ();
    zhashx_set_destructor (self->svcs, s_svc_destroy);
    self->router = mc_actor_bind ("sandbox");
    self->health = zsock_new_pull ("@" HEALTH_ENDPOINT);
    self->registry = mc_client_new ("registry");
    self->loop = zloop_new ();
    self->cgroups = mc_cgroups_new (ctx->config->data_dir);
    self->seq = (uint64_t)mc_time_unix_ms () * 1000;
    return self;
}

static void s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->svcs);
    zhashx_destroy (&self->procs);
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->health);
    zsock_destroy (&self->registry);
    mc_cgroups_destroy (&self->cgroups);
    free (self);
    *self_p = NULL;
}

void mc_sandbox_actor (zsock_t *pipe, void *args)
{
    self_t *self = s_self_new ((mc_context_t *)args);
    if (!self->router || !self->health || !self->registry) {
        s_self_destroy (&self);
        mc_actor_ready (pipe, -1);
        return;
    }
    const mc_config_t *cfg = self->ctx->config;
    zsys_info ("sandbox: isolation %s, cgroups %s", cfg->isolation,
               mc_cgroups_describe (self->cgroups));
    if (strcmp (cfg->isolation, "bwrap") != 0)
        zsys_warning ("sandbox: isolation = \"none\": modules are NOT in namespaces (unsafe)");
    int orphans = mc_cgroups_cleanup (self->cgroups);
    if (orphans > 0)
        zsys_warning ("sandbox: killed %d process(es) left by a previous run", orphans);
    s_remove_stray_env_files (self);
    zloop_reader (self->loop, pipe, mc_actor_on_pipe, self);
    zloop_reader (self->loop, self->router, s_on_request, self);
    zloop_reader (self->loop, self->health, s_on_health, self);
    zloop_timer (self->loop, 500, 0, s_on_reap_timer, self);
    self->monitor_timer = zloop_timer (self->loop, cfg->health_interval_ms, 0, s_on_monitor, self);
    zloop_set_nonstop (self->loop, true); // $TERM, not SIGINT, ends the loop
    mc_actor_ready (pipe, 0);
    zloop_start (self->loop);
    s_stop_all (self);
    s_self_destroy (&self);
}
