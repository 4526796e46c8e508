/*  sandbox actor

    DESIGN. sandbox owns every module process. One proc_t per module name, at most one
    process per name. A process is started through modcore-launch (core/launch.c) in a
    new session (so its whole process group can be signalled), with its environment
    in <dir>/.env.module (0600), which the launcher reads and deletes.

    States of a proc:
        LAUNCHING  started; a health worker polls GET /health; the caller waits
        TESTING    an install test run: like LAUNCHING (or running the manifest's test
                   command), then stopped again; the caller waits for the verdict
        RUNNING    healthy; an exit now is unexpected and is reported to the registry
        STOPPING   SIGTERM sent to the group, SIGKILL when the grace timer fires; the
                   caller (stop, or a failed launch/test) is answered once it has exited
    Invariants: a proc has at most one waiting caller (a second request for a name
    with a caller waiting is refused with CONFLICT); every caller is answered exactly
    once, on exit at the latest. Exits are seen through a pidfd in the loop, so the
    loop never blocks on a child. Health checks block (connect, read), so each runs in
    a short-lived worker thread that reports over inproc://modcore.sandbox.health;
    reports for a process that is gone are matched by pid and dropped.

    At $TERM every remaining process group gets SIGTERM, then SIGKILL after the grace
    period: the core never leaves modules behind on a clean stop. */
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
#include "envelope_cases.h"
#include "core/context.h"
#include "core/fsutil.h"

#include <sodium.h>
#include <sys/stat.h>

#define HEALTH_ENDPOINT "inproc://modcore.sandbox.health"
#define OUTPUT_TAIL     4096

typedef enum { PROC_LAUNCHING, PROC_TESTING, PROC_RUNNING, PROC_STOPPING } proc_state_t;

typedef struct self_t self_t;

typedef struct {
    self_t *owner;        // the actor that runs it
    char *name;           // module name (key in self->procs)
    pid_t pid;            // the launcher, then the module (same process after exec)
    int pidfd;            // readable when the process exits; -1 if unsupported
    proc_state_t state;   // see DESIGN
    mc_request_t *caller; // the request waiting for this proc, or NULL
    bool test_command;    // TESTING with the manifest's own test command
    char *log_path;       // where its output goes
    off_t log_offset;     // size of the log when it started: output since then is its own
    char *env_path;       // <dir>/.env.module until the launcher deleted it
    char *failure;        // why a launch/test failed, reported once the process is gone
    int grace_timer;      // zloop timer id while STOPPING (SIGKILL), or -1
    int deadline_timer;   // zloop timer id of a test command's deadline, or -1
    uint32_t grace_ms;    // SIGTERM -> SIGKILL
    zmq_pollitem_t item;  // pidfd poll item registered with the loop
} proc_t;

struct self_t {
    mc_context_t *ctx; // shared context
    zsock_t *router;   // inproc://modcore.sandbox
    zsock_t *health;   // PULL: health worker reports
    zsock_t *registry; // DEALER to the registry for exit notifications
    zloop_t *loop;     // sockets, pidfds, timers
    zhashx_t *procs;   // name -> proc_t
    int reap_timer;    // periodic reap when pidfds are unavailable
};

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
    char name[80]; // module
    pid_t pid;     // process being checked
    int port;      // its port
    uint32_t timeout_ms;
} health_job_t;

//  Worker thread: polls /health until 200, the process is gone, or the deadline.
static void *s_health_worker (void *arg)
{
    health_job_t *job = arg;
    int64_t deadline = zclock_mono () + job->timeout_ms;
    int last = -1;
    int delay = 20;
    bool ok = false;
    while (zclock_mono () < deadline) {
        if (kill (job->pid, 0) != 0)
            break;
        last = mc_sandbox_probe_health (job->port, 1000);
        if (last == 200) {
            ok = true;
            break;
        }
        zclock_sleep (delay);
        delay = delay < 200 ? delay * 2 : 200;
    }
    char reason[160];
    if (last < 0)
        snprintf (reason, sizeof reason, "no answer from GET /health on port %d within %u s",
                  job->port, job->timeout_ms / 1000);
    else
        snprintf (reason, sizeof reason, "GET /health on port %d answered %d, not 200, for %u s",
                  job->port, last, job->timeout_ms / 1000);
    zsock_t *push = zsock_new_push (">" HEALTH_ENDPOINT);
    if (push) {
        zsock_send (push, "sis", job->name, (int)job->pid, ok ? "" : reason);
        zsock_destroy (&push);
    }
    free (job);
    return NULL;
}

static void s_start_health_worker (proc_t *proc, int port, uint32_t timeout_ms)
{
    health_job_t *job = calloc (1, sizeof *job);
    assert (job);
    snprintf (job->name, sizeof job->name, "%s", proc->name);
    job->pid = proc->pid;
    job->port = port;
    job->timeout_ms = timeout_ms;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create (&thread, &attr, s_health_worker, job) != 0) {
        zsys_error ("sandbox: cannot start a health worker");
        free (job);
    }
    pthread_attr_destroy (&attr);
}

//  --- processes -------------------------------------------------------------------

static void s_proc_destroy (void **item)
{
    proc_t *proc = *item;
    if (!proc)
        return;
    if (proc->pidfd >= 0)
        close (proc->pidfd);
    if (proc->env_path)
        unlink (proc->env_path);
    mc_request_destroy (&proc->caller);
    free (proc->name);
    free (proc->log_path);
    free (proc->env_path);
    free (proc->failure);
    free (proc);
    *item = NULL;
}

//  Output the process wrote since it started (at most OUTPUT_TAIL bytes).
static char *s_output (proc_t *proc)
{
    char *all = mc_fs_tail (proc->log_path, OUTPUT_TAIL);
    struct stat st;
    if (stat (proc->log_path, &st) == 0 && st.st_size - proc->log_offset < (off_t)strlen (all)) {
        off_t own = st.st_size - proc->log_offset;
        char *mine = strdup (all + strlen (all) - (own > 0 ? own : 0));
        free (all);
        return mine;
    }
    return all;
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
    char *output = status != MC__STATUS__STATUS_OK ? s_output (proc) : NULL;
    result.output = output ? output : "";
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.status = status;
    reply.error = (char *)(code ? code : "");
    reply.detail = (char *)(detail ? detail : "");
    reply.body_case = MC__ENVELOPE__BODY_SANDBOX_RESULT;
    reply.sandbox_result = &result;
    mc_reply (self->router, proc->caller->routing_id, proc->caller->env->request_id, &reply);
    mc_request_destroy (&proc->caller);
    free (output);
}

static int s_on_grace (zloop_t *loop, int timer_id, void *arg)
{
    proc_t *proc = arg;
    proc->grace_timer = -1;
    zsys_warning ("sandbox: %s did not stop within %u ms, killing it", proc->name, proc->grace_ms);
    kill (-proc->pid, SIGKILL);
    return 0;
}

//  Sends SIGTERM to the proc's group and SIGKILL after its grace period.
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
    kill (-proc->pid, SIGTERM);
    if (grace_ms == 0)
        kill (-proc->pid, SIGKILL);
    else
        proc->grace_timer = zloop_timer (self->loop, grace_ms, 1, s_on_grace, proc);
}

static void s_notify_exit (self_t *self, proc_t *proc, int exit_code, int signal)
{
    Mc__RegistryExited exited = MC__REGISTRY_EXITED__INIT;
    exited.name = proc->name;
    exited.pid = proc->pid;
    exited.exit_code = exit_code;
    exited.signal = signal;
    mc_env_t env = MC__ENVELOPE__INIT;
    env.body_case = MC__ENVELOPE__BODY_REGISTRY_EXITED;
    env.registry_exited = &exited;
    mc_notify (self->registry, &env);
}

//  The process has exited with wait status: answer or report, then forget it.
static void s_on_exit (self_t *self, proc_t *proc, int wstatus)
{
    int exit_code = WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1;
    int signal = WIFSIGNALED (wstatus) ? WTERMSIG (wstatus) : 0;
    //  The module's group may hold children that outlived it; none may stay.
    kill (-proc->pid, SIGKILL);
    if (proc->grace_timer >= 0)
        zloop_timer_end (self->loop, proc->grace_timer);
    if (proc->deadline_timer >= 0)
        zloop_timer_end (self->loop, proc->deadline_timer);
    if (proc->pidfd >= 0)
        zloop_poller_end (self->loop, &proc->item);

    char how[96];
    if (signal)
        snprintf (how, sizeof how, "killed by signal %d (%s)", signal, strsignal (signal));
    else
        snprintf (how, sizeof how, "exited with code %d", exit_code);

    switch (proc->state) {
        case PROC_LAUNCHING:
            s_answer (self, proc, MC__STATUS__STATUS_INVALID, "MODULE_EXITED", how, exit_code,
                      signal);
            break;
        case PROC_TESTING:
            if (proc->test_command && exit_code == 0)
                s_answer (self, proc, MC__STATUS__STATUS_OK, NULL, NULL, 0, 0);
            else
                s_answer (self, proc, MC__STATUS__STATUS_INVALID, "SANDBOX_TEST_FAILED", how,
                          exit_code, signal);
            break;
        case PROC_RUNNING:
            zsys_warning ("sandbox: %s (pid %d) %s", proc->name, proc->pid, how);
            s_notify_exit (self, proc, exit_code, signal);
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
static proc_t *s_spawn (self_t *self, const Mc__SandboxSpec *spec, char *detail, size_t size)
{
    if (!spec || !spec->name || !*spec->name || !spec->dir || !*spec->dir || spec->n_argv == 0) {
        snprintf (detail, size, "incomplete process spec");
        return NULL;
    }
    proc_t *proc = calloc (1, sizeof *proc);
    assert (proc);
    proc->owner = self;
    proc->name = strdup (spec->name);
    proc->pidfd = -1;
    proc->grace_timer = -1;
    proc->deadline_timer = -1;
    if (asprintf (&proc->env_path, "%s/.env.module", spec->dir) < 0 ||
        asprintf (&proc->log_path, "%s",
                  spec->log_path && *spec->log_path ? spec->log_path : "/dev/null") < 0)
        abort ();
    struct stat st;
    if (stat (proc->log_path, &st) == 0)
        proc->log_offset = st.st_size;
    if (s_write_env (proc->env_path, spec) != 0) {
        snprintf (detail, size, "cannot write %s: %s", proc->env_path, strerror (errno));
        s_proc_destroy ((void **)&proc);
        return NULL;
    }
    //  argv: launcher options, then the module's own argv.
    size_t argc = 0;
    char *argv[spec->n_argv + 12];
    char parent[16];
    snprintf (parent, sizeof parent, "%d", (int)getpid ());
    argv[argc++] = (char *)self->ctx->config->launcher;
    argv[argc++] = "--env-file";
    argv[argc++] = proc->env_path;
    argv[argc++] = "--dir";
    argv[argc++] = spec->dir;
    argv[argc++] = "--log";
    argv[argc++] = proc->log_path;
    argv[argc++] = "--parent";
    argv[argc++] = parent;
    argv[argc++] = "--";
    for (size_t i = 0; i < spec->n_argv; i++)
        argv[argc++] = spec->argv[i];
    argv[argc] = NULL;

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
    int rc = posix_spawn (&proc->pid, argv[0], NULL, &attr, argv, empty_env);
    posix_spawnattr_destroy (&attr);
    if (rc != 0) {
        snprintf (detail, size, "cannot start %s: %s", argv[0], strerror (rc));
        s_proc_destroy ((void **)&proc);
        return NULL;
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

static void s_handle_launch (self_t *self, mc_request_t *req, bool test)
{
    const Mc__SandboxSpec *spec =
        test ? (req->env->sandbox_test ? req->env->sandbox_test->spec : NULL)
             : req->env->sandbox_launch->spec;
    if (spec && spec->name && zhashx_lookup (self->procs, spec->name)) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_CONFLICT, "ALREADY_RUNNING",
                        "module %s already has a process", spec->name);
        mc_request_destroy (&req);
        return;
    }
    char detail[512];
    proc_t *proc = s_spawn (self, spec, detail, sizeof detail);
    if (!proc) {
        mc_reply_error (self->router, req->routing_id, req->env->request_id,
                        MC__STATUS__STATUS_INTERNAL, "SPAWN_FAILED", "%s", detail);
        mc_request_destroy (&req);
        return;
    }
    proc->state = test ? PROC_TESTING : PROC_LAUNCHING;
    proc->grace_ms = self->ctx->config->stop_grace_ms;
    uint32_t timeout = test ? req->env->sandbox_test->timeout_ms : spec->health_timeout_ms;
    if (timeout == 0)
        timeout = test ? self->ctx->config->sandbox_test_ms : self->ctx->config->health_timeout_ms;
    //  A test with its own command waits for its exit (0 = pass). Otherwise a test is
    //  "starts and answers /health" like a launch, or, for a module without a port,
    //  "is still running after a second".
    proc->test_command = test && req->env->sandbox_test->wait_exit;
    if (proc->test_command)
        proc->deadline_timer = zloop_timer (self->loop, timeout, 1, s_on_test_deadline, proc);
    else if (spec->port > 0)
        s_start_health_worker (proc, (int)spec->port, timeout);
    else if (test)
        proc->deadline_timer = zloop_timer (self->loop, 1000, 1, s_on_survived, proc);
    else
        proc->state = PROC_RUNNING; // nothing to wait for: a portless SYSTEM module
    proc->caller = req;
    if (proc->state == PROC_RUNNING)
        s_answer (self, proc, MC__STATUS__STATUS_OK, NULL, NULL, 0, 0);
}

static void s_handle_stop (self_t *self, mc_request_t *req)
{
    const char *name = req->env->sandbox_stop->name;
    proc_t *proc = name ? zhashx_lookup (self->procs, name) : NULL;
    if (!proc) {
        Mc__SandboxResult result = MC__SANDBOX_RESULT__INIT;
        mc_env_t reply = MC__ENVELOPE__INIT;
        reply.body_case = MC__ENVELOPE__BODY_SANDBOX_RESULT;
        reply.sandbox_result = &result;
        mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
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
    s_begin_stop (self, proc, grace ? grace : self->ctx->config->stop_grace_ms);
}

static void s_handle_status (self_t *self, mc_request_t *req)
{
    const char *name = req->env->sandbox_status->name;
    proc_t *proc = name ? zhashx_lookup (self->procs, name) : NULL;
    Mc__SandboxResult result = MC__SANDBOX_RESULT__INIT;
    if (proc) {
        result.pid = proc->pid;
        result.running = proc->state == PROC_RUNNING;
    }
    mc_env_t reply = MC__ENVELOPE__INIT;
    reply.body_case = MC__ENVELOPE__BODY_SANDBOX_RESULT;
    reply.sandbox_result = &result;
    mc_reply (self->router, req->routing_id, req->env->request_id, &reply);
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
    char *name = NULL, *reason = NULL;
    int pid = 0;
    if (zsock_recv (self->health, "sis", &name, &pid, &reason) != 0)
        return 0;
    proc_t *proc = name ? zhashx_lookup (self->procs, name) : NULL;
    if (proc && proc->pid == pid) {
        bool ok = reason && !*reason;
        if (proc->state == PROC_LAUNCHING && ok) {
            proc->state = PROC_RUNNING;
            zsys_info ("sandbox: %s (pid %d) is healthy", proc->name, proc->pid);
            s_answer (self, proc, MC__STATUS__STATUS_OK, NULL, NULL, 0, 0);
        } else if (proc->state == PROC_LAUNCHING || proc->state == PROC_TESTING) {
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

static int s_on_pipe (zloop_t *loop, zsock_t *reader, void *arg)
{
    char *command = zstr_recv (reader);
    int rc = (!command || streq (command, "$TERM")) ? -1 : 0;
    zstr_free (&command);
    return rc;
}

//  Stops every process: SIGTERM to all groups, wait up to the grace period, SIGKILL.
static void s_stop_all (self_t *self)
{
    size_t count = zhashx_size (self->procs);
    if (count == 0)
        return;
    zsys_info ("sandbox: stopping %zu module processes", count);
    for (proc_t *proc = zhashx_first (self->procs); proc; proc = zhashx_next (self->procs))
        kill (-proc->pid, SIGTERM);
    int64_t deadline = zclock_mono () + self->ctx->config->stop_grace_ms;
    while (zhashx_size (self->procs) > 0) {
        bool late = zclock_mono () >= deadline;
        zlistx_t *names = zhashx_keys (self->procs);
        for (char *name = zlistx_first (names); name; name = zlistx_next (names)) {
            proc_t *proc = zhashx_lookup (self->procs, name);
            if (late)
                kill (-proc->pid, SIGKILL);
            proc->state = PROC_STOPPING;
            if (proc->caller) {
                s_answer (self, proc, MC__STATUS__STATUS_UNAVAILABLE, "SHUTTING_DOWN",
                          "the core is stopping", -1, 0);
            }
            int wstatus;
            pid_t rc = waitpid (proc->pid, &wstatus, late ? 0 : WNOHANG);
            if (rc == proc->pid || (rc < 0 && errno == ECHILD)) {
                kill (-proc->pid, SIGKILL);
                zhashx_delete (self->procs, name);
            }
        }
        zlistx_destroy (&names);
        if (zhashx_size (self->procs) > 0)
            zclock_sleep (20);
    }
}

static self_t *s_self_new (mc_context_t *ctx)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = ctx;
    self->procs = zhashx_new ();
    zhashx_set_destructor (self->procs, s_proc_destroy);
    self->router = mc_actor_bind ("sandbox");
    self->health = zsock_new_pull ("@" HEALTH_ENDPOINT);
    self->registry = mc_client_new ("registry");
    self->loop = zloop_new ();
    self->reap_timer = -1;
    return self;
}

static void s_self_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->procs);
    zloop_destroy (&self->loop);
    zsock_destroy (&self->router);
    zsock_destroy (&self->health);
    zsock_destroy (&self->registry);
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
    zloop_reader (self->loop, pipe, s_on_pipe, self);
    zloop_reader (self->loop, self->router, s_on_request, self);
    zloop_reader (self->loop, self->health, s_on_health, self);
    self->reap_timer = zloop_timer (self->loop, 500, 0, s_on_reap_timer, self);
    zloop_set_nonstop (self->loop, true); // $TERM, not SIGINT, ends the loop
    mc_actor_ready (pipe, 0);
    zloop_start (self->loop);
    s_stop_all (self);
    s_self_destroy (&self);
}
