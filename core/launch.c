/*  modcore-launch: the first program of every module process, and the builder of its
    sandbox.

    It runs in two stages (the same binary):

    OUTER (outside the sandbox, started by the sandbox actor in a new session, as the
    core's user):
      1. arranges to be killed if the core dies (PR_SET_PDEATHSIG; it is kept across
         the exec of bwrap) and gives up if the core is gone already;
      2. points stdin at /dev/null, stdout/stderr at the log (--log) or keeps the pipes
         it was given, and closes every other inherited descriptor;
      3. reads <dir>/.env.module and deletes it at once: the secrets then exist only in
         this process's memory and environment, never on disk;
      4. joins the module's cgroups (--cgroup, one per hierarchy), so every limit holds
         before any module code runs;
      5. sets the rlimits (nofile, nproc, core = 0, fsize; data only when no memory
         cgroup exists);
      6. creates <dir>/data owned by the module's user;
      7. execs bubblewrap (--bwrap) with the sandbox described in docs/operations.md:
         new mount/pid/ipc/uts (and, with --network none, net) namespaces,
         --die-with-parent, --new-session, / read-only, a private size-limited /tmp,
         the data dir hidden by a tmpfs with only the module's dir (read-only) and its
         data/ subdir (writable) and <data>/run (read-only) shown again, the core's
         config file hidden, a fresh /proc and /dev; inside, bwrap runs stage INNER.
      Without --bwrap (isolation = "none") it runs stage INNER's steps itself.

    INNER (inside the sandbox, as root of the new namespaces, before the module):
      drops every capability from the bounding set, switches to the module's user and
      group (no supplementary groups), clears all capabilities (also when staying
      uid 0), sets no_new_privs, loads the seccomp filter (built here with libseccomp:
      the list is s_denied below and in docs/operations.md), and execs the module's
      entry point in its directory.

    usage: modcore-launch --env-file PATH --dir DIR [--log PATH] [--parent PID]
               [--bwrap PATH --data DIR [--hide PATH]... [--network loopback|none]
                [--tmp-mb N]] [--cgroup DIR]... [--user UID:GID] [--nofile N]
               [--nproc N] [--fsize-mb N] [--data-mb N] -- ARGV...
           modcore-launch --inner [--user UID:GID] --dir DIR -- ARGV...
    Exit status 127 (and a line on stderr) if it cannot build the sandbox or exec. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_LIST 16 // --hide and --cgroup entries

static void s_die (const char *what)
{
    fprintf (stderr, "modcore-launch: %s: %s\n", what, strerror (errno));
    _exit (127);
}

static void s_fail (const char *what)
{
    fprintf (stderr, "modcore-launch: %s\n", what);
    _exit (127);
}

//  Everything the command line says.
typedef struct {
    bool inner;                    // stage INNER
    const char *env_file;          // --env-file
    const char *dir;               // --dir: the module's directory
    const char *log;               // --log, or NULL: stdout/stderr as inherited
    pid_t parent;                  // --parent: the core's pid, or 0
    const char *bwrap;             // --bwrap, or NULL: no namespaces
    const char *data;              // --data: the core's data dir (hidden)
    const char *hide[MAX_LIST];    // --hide: files made empty inside
    size_t n_hide;                 // entries in hide
    const char *cgroups[MAX_LIST]; // --cgroup: directories whose cgroup.procs we join
    size_t n_cgroups;              // entries in cgroups
    bool network_none;             // --network none
    long tmp_mb;                   // --tmp-mb: size of the private /tmp
    long uid, gid;                 // --user, -1 = keep
    long nofile, nproc;            // rlimits, 0 = leave
    long fsize_mb, data_mb;        // rlimits in MiB, 0 = leave
    char **argv;                   // the module's argv
} opts_t;

static long s_number (const char *text, const char *what)
{
    char *end = NULL;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || !*text || *end || value < 0) {
        fprintf (stderr, "modcore-launch: %s needs a non-negative number, not '%s'\n", what, text);
        _exit (127);
    }
    return value;
}

static void s_parse (int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.uid = -1, .gid = -1, .tmp_mb = 64};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp (a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp (a, "--inner") == 0) {
            o->inner = true;
            continue;
        }
        if (i + 1 >= argc)
            break;
        const char *v = argv[++i];
        if (strcmp (a, "--env-file") == 0)
            o->env_file = v;
        else if (strcmp (a, "--dir") == 0)
            o->dir = v;
        else if (strcmp (a, "--log") == 0)
            o->log = v;
        else if (strcmp (a, "--parent") == 0)
            o->parent = (pid_t)s_number (v, a);
        else if (strcmp (a, "--bwrap") == 0)
            o->bwrap = v;
        else if (strcmp (a, "--data") == 0)
            o->data = v;
        else if (strcmp (a, "--hide") == 0 && o->n_hide < MAX_LIST)
            o->hide[o->n_hide++] = v;
        else if (strcmp (a, "--cgroup") == 0 && o->n_cgroups < MAX_LIST)
            o->cgroups[o->n_cgroups++] = v;
        else if (strcmp (a, "--network") == 0) {
            if (strcmp (v, "none") && strcmp (v, "loopback"))
                s_fail ("--network must be loopback or none");
            o->network_none = strcmp (v, "none") == 0;
        } else if (strcmp (a, "--tmp-mb") == 0)
            o->tmp_mb = s_number (v, a);
        else if (strcmp (a, "--user") == 0) {
            char *colon = strchr (v, ':');
            if (!colon)
                s_fail ("--user needs UID:GID");
            *colon = 0;
            o->uid = s_number (v, a);
            o->gid = s_number (colon + 1, a);
        } else if (strcmp (a, "--nofile") == 0)
            o->nofile = s_number (v, a);
        else if (strcmp (a, "--nproc") == 0)
            o->nproc = s_number (v, a);
        else if (strcmp (a, "--fsize-mb") == 0)
            o->fsize_mb = s_number (v, a);
        else if (strcmp (a, "--data-mb") == 0)
            o->data_mb = s_number (v, a);
        else {
            fprintf (stderr, "modcore-launch: unknown option %s\n", a);
            _exit (127);
        }
    }
    o->argv = i < argc ? argv + i : NULL;
    bool usable = o->dir && o->argv && (o->inner || o->env_file) && (!o->bwrap || o->data);
    if (!usable) {
        fprintf (stderr, "usage: modcore-launch --env-file PATH --dir DIR [--log PATH] "
                         "[--parent PID] [--bwrap PATH --data DIR ...] -- ARGV...\n"
                         "       modcore-launch --inner [--user UID:GID] --dir DIR -- ARGV...\n");
        _exit (127);
    }
}

//  Replaces the environment with the KEY=VALUE lines of path, then deletes path.
static void s_load_env (const char *path)
{
    int fd = open (path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        s_die ("cannot open the environment file");
    static char buf[65536];
    ssize_t len = read (fd, buf, sizeof buf - 1);
    close (fd);
    unlink (path); // read once, then gone: the secrets are not left on disk
    if (len < 0)
        s_die ("cannot read the environment file");
    buf[len] = 0;
    clearenv ();
    for (char *line = strtok (buf, "\n"); line; line = strtok (NULL, "\n")) {
        char *eq = strchr (line, '=');
        if (!eq || eq == line)
            continue;
        *eq = 0;
        setenv (line, eq + 1, 1);
    }
    memset (buf, 0, sizeof buf);
    if (!getenv ("PATH"))
        setenv ("PATH", "/usr/local/bin:/usr/bin:/bin", 1);
}

//  Moves this process into each cgroup (writes its pid to <dir>/cgroup.procs).
static void s_join_cgroups (const opts_t *o)
{
    char pid[24];
    int n = snprintf (pid, sizeof pid, "%d\n", (int)getpid ());
    for (size_t i = 0; i < o->n_cgroups; i++) {
        char path[PATH_MAX];
        snprintf (path, sizeof path, "%s/cgroup.procs", o->cgroups[i]);
        int fd = open (path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write (fd, pid, (size_t)n) != n) {
            fprintf (stderr, "modcore-launch: cannot join cgroup %s: %s\n", o->cgroups[i],
                     strerror (errno));
            _exit (127);
        }
        close (fd);
    }
}

static void s_rlimit (int resource, rlim_t value, const char *name)
{
    struct rlimit limit = {value, value};
    if (setrlimit (resource, &limit) != 0) {
        fprintf (stderr, "modcore-launch: cannot set %s: %s\n", name, strerror (errno));
        _exit (127);
    }
}

static void s_rlimits (const opts_t *o)
{
    s_rlimit (RLIMIT_CORE, 0, "RLIMIT_CORE");
    if (o->nofile)
        s_rlimit (RLIMIT_NOFILE, (rlim_t)o->nofile, "RLIMIT_NOFILE");
    if (o->nproc)
        s_rlimit (RLIMIT_NPROC, (rlim_t)o->nproc, "RLIMIT_NPROC");
    if (o->fsize_mb)
        s_rlimit (RLIMIT_FSIZE, (rlim_t)o->fsize_mb << 20, "RLIMIT_FSIZE");
    if (o->data_mb)
        s_rlimit (RLIMIT_DATA, (rlim_t)o->data_mb << 20, "RLIMIT_DATA");
}

//  <dir>/data: the one place of its directory the module may write.
static void s_make_data_dir (const opts_t *o)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/data", o->dir);
    struct stat st;
    if (lstat (path, &st) == 0 && !S_ISDIR (st.st_mode))
        s_fail ("the module's data/ is not a directory");
    if (mkdir (path, 0700) != 0 && errno != EEXIST)
        s_die ("cannot create the module's data/ directory");
    if (o->uid >= 0 && lchown (path, (uid_t)o->uid, (gid_t)o->gid) != 0)
        s_die ("cannot hand the module's data/ directory to its user");
}

//  --- stage INNER ------------------------------------------------------------------------

//  Syscalls refused with EPERM (see docs/operations.md for why each one).
static const int s_denied[] = {
    SCMP_SYS (ptrace),
    SCMP_SYS (process_vm_readv),
    SCMP_SYS (process_vm_writev),
    SCMP_SYS (mount),
    SCMP_SYS (umount2),
    SCMP_SYS (pivot_root),
    SCMP_SYS (chroot),
    SCMP_SYS (move_mount),
    SCMP_SYS (open_tree),
    SCMP_SYS (fsopen),
    SCMP_SYS (fsmount),
    SCMP_SYS (fsconfig),
    SCMP_SYS (fspick),
    SCMP_SYS (mount_setattr),
    SCMP_SYS (kexec_load),
    SCMP_SYS (kexec_file_load),
    SCMP_SYS (bpf),
    SCMP_SYS (keyctl),
    SCMP_SYS (add_key),
    SCMP_SYS (request_key),
    SCMP_SYS (perf_event_open),
    SCMP_SYS (init_module),
    SCMP_SYS (finit_module),
    SCMP_SYS (delete_module),
    SCMP_SYS (swapon),
    SCMP_SYS (swapoff),
    SCMP_SYS (reboot),
    SCMP_SYS (settimeofday),
    SCMP_SYS (clock_settime),
    SCMP_SYS (clock_adjtime),
    SCMP_SYS (adjtimex),
    SCMP_SYS (acct),
    SCMP_SYS (quotactl),
    SCMP_SYS (unshare),
    SCMP_SYS (setns),
    SCMP_SYS (userfaultfd),
    SCMP_SYS (open_by_handle_at),
    SCMP_SYS (name_to_handle_at),
    SCMP_SYS (iopl),
    SCMP_SYS (ioperm),
    SCMP_SYS (lookup_dcookie),
    SCMP_SYS (syslog),
    SCMP_SYS (personality),
    SCMP_SYS (sethostname),
    SCMP_SYS (setdomainname),
};

//  Builds and loads the filter: default allow, the list above EPERM, clone with any
//  namespace flag EPERM, clone3 ENOSYS (its flags are in memory, so libc falls back to
//  clone, which is checked), packet and raw sockets EPERM.
static void s_seccomp (void)
{
    scmp_filter_ctx ctx = seccomp_init (SCMP_ACT_ALLOW);
    if (!ctx)
        s_fail ("cannot build the seccomp filter");
    int rc = 0;
    for (size_t i = 0; i < sizeof s_denied / sizeof s_denied[0]; i++)
        if (s_denied[i] >= 0) // a syscall this architecture lacks is negative
            rc |= seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), s_denied[i], 0);
    static const unsigned long ns_flags[] = {CLONE_NEWNS,    CLONE_NEWUSER, CLONE_NEWPID,
                                             CLONE_NEWNET,   CLONE_NEWIPC,  CLONE_NEWUTS,
                                             CLONE_NEWCGROUP};
    for (size_t i = 0; i < sizeof ns_flags / sizeof ns_flags[0]; i++)
        rc |= seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (clone), 1,
                                SCMP_A0 (SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i]));
    rc |= seccomp_rule_add (ctx, SCMP_ACT_ERRNO (ENOSYS), SCMP_SYS (clone3), 0);
    rc |= seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (socket), 1,
                            SCMP_A0 (SCMP_CMP_EQ, AF_PACKET));
    int families[] = {AF_INET, AF_INET6};
    for (size_t i = 0; i < 2; i++)
        rc |= seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (socket), 2,
                                SCMP_A0 (SCMP_CMP_EQ, (scmp_datum_t)families[i]),
                                SCMP_A1 (SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW));
    if (rc != 0)
        s_fail ("cannot add the seccomp rules");
    if (seccomp_load (ctx) != 0)
        s_fail ("cannot load the seccomp filter");
    seccomp_release (ctx);
}

//  Drops the bounding set, becomes the module's user, clears every capability, sets
//  no_new_privs, loads seccomp and execs the module. Never returns.
static void s_inner (const opts_t *o)
{
    for (int cap = 0; cap <= 63; cap++)
        if (prctl (PR_CAPBSET_READ, cap) == 1 && prctl (PR_CAPBSET_DROP, cap) != 0 &&
            errno != EPERM)
            s_die ("cannot drop the capability bounding set");
    prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    if (o->uid >= 0) {
        if (setgroups (0, NULL) != 0 && errno != EPERM)
            s_die ("cannot drop supplementary groups");
        if (setgid ((gid_t)o->gid) != 0 || setuid ((uid_t)o->uid) != 0)
            s_die ("cannot switch to the module's user");
    }
    //  Staying uid 0 (a root module by configuration) must not keep root's powers either.
    prctl (PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                  SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0, 0, 0}, {0, 0, 0}};
    if (syscall (SYS_capset, &header, data) != 0)
        s_die ("cannot clear capabilities");
    if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        s_die ("cannot set no_new_privs");
    s_seccomp ();
    umask (027);
    if (chdir (o->dir) != 0)
        s_die ("cannot enter the module directory");
    execvp (o->argv[0], o->argv);
    fprintf (stderr, "modcore-launch: cannot run %s: %s\n", o->argv[0], strerror (errno));
    _exit (127);
}

//  --- stage OUTER: the bwrap command line ------------------------------------------------

typedef struct {
    char *items[256];
    size_t count;
} args_t;

static void s_add (args_t *a, const char *item)
{
    if (a->count + 1 >= sizeof a->items / sizeof a->items[0])
        s_fail ("too many arguments");
    a->items[a->count++] = (char *)item;
    a->items[a->count] = NULL;
}

static char *s_fmt (const char *fmt, const char *a, const char *b)
{
    char *text = NULL;
    if (asprintf (&text, fmt, a, b) < 0)
        abort ();
    return text;
}

static bool s_under (const char *path, const char *dir)
{
    size_t n = strlen (dir);
    return strncmp (path, dir, n) == 0 && (path[n] == '/' || path[n] == 0);
}

static void s_exec_bwrap (const opts_t *o)
{
    char self[PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        s_die ("cannot find my own executable");
    self[len] = 0;
    args_t a = {.count = 0};
    s_add (&a, o->bwrap);
    s_add (&a, "--die-with-parent");
    s_add (&a, "--new-session");
    s_add (&a, "--unshare-pid");
    s_add (&a, "--unshare-ipc");
    s_add (&a, "--unshare-uts");
    s_add (&a, "--hostname");
    s_add (&a, "module");
    if (o->network_none)
        s_add (&a, "--unshare-net");
    s_add (&a, "--ro-bind");
    s_add (&a, "/");
    s_add (&a, "/");
    s_add (&a, "--proc");
    s_add (&a, "/proc");
    s_add (&a, "--dev");
    s_add (&a, "/dev");
    //  /tmp first: the data dir may live below it and is mounted over it afterwards.
    char size[32];
    snprintf (size, sizeof size, "%ld", (o->tmp_mb ? o->tmp_mb : 64) << 20);
    s_add (&a, "--perms");
    s_add (&a, "1777");
    s_add (&a, "--size");
    s_add (&a, size);
    s_add (&a, "--tmpfs");
    s_add (&a, "/tmp");
    s_add (&a, "--tmpfs");
    s_add (&a, o->data);
    //  Directories between the data dir and the module's (bwrap would make them 0700,
    //  closed to the module's user).
    if (s_under (o->dir, o->data)) {
        static char parents[8][PATH_MAX];
        size_t n = 0;
        for (const char *p = o->dir + strlen (o->data) + 1; (p = strchr (p, '/')) && n < 8; p++) {
            snprintf (parents[n], PATH_MAX, "%.*s", (int)(p - o->dir), o->dir);
            s_add (&a, "--perms");
            s_add (&a, "0755");
            s_add (&a, "--dir");
            s_add (&a, parents[n++]);
        }
    }
    s_add (&a, "--ro-bind");
    s_add (&a, o->dir);
    s_add (&a, o->dir);
    char *data_dir = s_fmt ("%s/data", o->dir, NULL);
    s_add (&a, "--bind");
    s_add (&a, data_dir);
    s_add (&a, data_dir);
    //  The module's own database (<dir>/db, the storage actor's LevelDB) is the core's:
    //  hidden, so a module can neither read nor corrupt it behind the storage API.
    char *db_dir = s_fmt ("%s/db", o->dir, NULL);
    struct stat db_st;
    if (lstat (db_dir, &db_st) == 0 && S_ISDIR (db_st.st_mode)) {
        s_add (&a, "--tmpfs");
        s_add (&a, db_dir);
    }
    char *run = s_fmt ("%s/run", o->data, NULL);
    s_add (&a, "--ro-bind-try");
    s_add (&a, run);
    s_add (&a, run);
    for (size_t i = 0; i < o->n_hide; i++) {
        //  Below /tmp or the data dir it is hidden already (and may not exist there).
        if (s_under (o->hide[i], "/tmp") || s_under (o->hide[i], o->data))
            continue;
        s_add (&a, "--ro-bind");
        s_add (&a, "/dev/null");
        s_add (&a, o->hide[i]);
    }
    //  This program runs stage INNER; it stays reachable even below a hidden path.
    s_add (&a, "--ro-bind");
    s_add (&a, self);
    s_add (&a, self);
    s_add (&a, "--chdir");
    s_add (&a, o->dir);
    s_add (&a, "--");
    s_add (&a, self);
    s_add (&a, "--inner");
    char user[48];
    if (o->uid >= 0) {
        snprintf (user, sizeof user, "%ld:%ld", o->uid, o->gid);
        s_add (&a, "--user");
        s_add (&a, user);
    }
    s_add (&a, "--dir");
    s_add (&a, o->dir);
    s_add (&a, "--");
    for (char **arg = o->argv; *arg; arg++)
        s_add (&a, *arg);
    execv (o->bwrap, a.items);
    fprintf (stderr, "modcore-launch: cannot run %s: %s\n", o->bwrap, strerror (errno));
    _exit (127);
}

int main (int argc, char **argv)
{
    opts_t o;
    s_parse (argc, argv, &o);
    if (o.inner)
        s_inner (&o);

    //  Killed with the core: if the core is gone already, do not start at all.
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (o.parent && getppid () != o.parent)
        return 127;
    if (o.log) {
        int out = open (o.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (out >= 0) {
            dup2 (out, STDOUT_FILENO);
            dup2 (out, STDERR_FILENO);
            close (out);
        }
    }
    int in = open ("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in >= 0) {
        dup2 (in, STDIN_FILENO);
        close (in);
    }
    //  Nothing of the core's (sockets, the store) leaks into the module.
    close_range (3, ~0u, 0);

    s_load_env (o.env_file);
    s_join_cgroups (&o);
    s_rlimits (&o);
    s_make_data_dir (&o);
    umask (027);
    if (o.bwrap)
        s_exec_bwrap (&o);
    s_inner (&o);
    return 127;
}
