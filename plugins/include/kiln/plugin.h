/*
 * kiln/plugin.h — the whole Kiln plugin ABI, version 1.
 *
 * A plugin is a shared object that exports one function, kiln_plugin_v1(),
 * returning a static descriptor.  The host (a Kiln daemon) dlopen()s the
 * file, checks the descriptor and calls init() with a host table through
 * which the plugin reaches the event loop, the log, its own config table and
 * a process spawner.  A plugin links libuv and nothing of Kiln.
 *
 * Contract for every asynchronous operation (poll, prepare, run, list,
 * report, event):
 *   - it returns 0 once started, or a negative errno if it could not start;
 *     an operation that failed to start never calls its callback;
 *   - a started operation calls its callback exactly once, later, from the
 *     loop (never from inside the start call), also when cancelled, then
 *     with status -ECANCELED;
 *   - pointer arguments are borrowed for the duration of the call (copy what
 *     you keep), pointers handed to a callback are valid during the callback;
 *   - nothing blocks the loop: run programs with host->spawn, files with
 *     uv_fs_* or the libuv thread pool;
 *   - no C++ exception crosses this boundary: a C++ plugin declares every
 *     function it hands over (descriptor, ops, callbacks it gives libuv)
 *     noexcept; the host's functions never throw either;
 *   - all state lives in the `self` returned by init (no globals);
 *   - `op` (the last argument of every start call) may be NULL when the
 *     caller will never cancel; otherwise it is set on success only, and
 *     stays valid for cancel() until the callback has run.
 * Each operation below has its own contract block: what each argument holds
 * and what its callback receives for each status.
 *
 * Config tables: a vcs or exec plugin NAME gets the table [plugin.NAME] of
 * the daemon's config; a report plugin gets its [[report]] table without
 * the dispatcher's routing key `plugin` (see kiln.toml(5)).  Keys a plugin
 * does not list in config_keys are refused when the daemon starts.
 *
 * The host table, the descriptor and the report event grow at their end: a
 * plugin built against a newer header checks a field added after ABI 1's
 * with KILN_HOST_HAS before using it, the host checks the plugin's with
 * KILN_PLUGIN_HAS, and a plugin checks an event's with KILN_EVENT_HAS.
 */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_PLUGIN_ABI 1
#define KILN_PLUGIN_ENTRY "kiln_plugin_v1"

#if defined(__GNUC__)
#define KILN_PLUGIN_EXPORT __attribute__((visibility("default")))
#define KILN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define KILN_PLUGIN_EXPORT
#define KILN_PRINTF(f, a)
#endif

enum kiln_plugin_kind {
    KILN_PLUGIN_VCS = 1,    /* polls repositories, prepares workspaces */
    KILN_PLUGIN_EXEC = 2,   /* runs (and lists) the tests of a workspace */
    KILN_PLUGIN_REPORT = 3, /* hands results (and events) to the outside world */
};

/* syslog priorities, as the host's log understands them */
enum kiln_log_level {
    KILN_LOG_ERR = 3,
    KILN_LOG_WARNING = 4,
    KILN_LOG_NOTICE = 5,
    KILN_LOG_INFO = 6,
    KILN_LOG_DEBUG = 7,
};

/* ---- processes: the host's spawner (argv only, own process group) ---- */

struct kiln_process; /* opaque, owned by the host */

struct kiln_spawn_request {
    const char *const *argv; /* NULL-terminated; argv[0] looked up in PATH */
    const char *cwd;         /* NULL: the daemon's working directory */
    const char *const *env;  /* NULL-terminated "K=V" list; NULL: inherit */
    uint64_t timeout_ms;     /* 0: none; on expiry the whole process group is killed */
    size_t max_output;       /* bytes kept of each of stdout, stderr; 0: 1 MiB */
};

struct kiln_spawn_result {
    int64_t exit_status;   /* valid when term_signal == 0 */
    int term_signal;       /* signal that ended it, or 0 */
    int timed_out;         /* 1 when the host killed it for timeout_ms */
    int cancelled;         /* 1 when killed through kill_process */
    const char *out;       /* captured stdout (not NUL-terminated) */
    size_t out_len;
    const char *err;       /* captured stderr (not NUL-terminated) */
    size_t err_len;
    int truncated;         /* 1 when output beyond max_output was dropped */
    uint64_t duration_ms;
};

/* status is 0, or -errno when the process could not be started (then res is NULL). */
typedef void (*kiln_spawn_cb)(void *arg, int status, const struct kiln_spawn_result *res);

/* ---- the host table, handed to init() ---- */

struct kiln_host {
    uint32_t abi;  /* KILN_PLUGIN_ABI of the host */
    uint32_t size; /* sizeof(struct kiln_host) of the host: check before using newer fields */
    uv_loop_t *loop;
    const char *daemon; /* "kiln-runner", ... */
    void *host_data;    /* the host's own: pass `host` back, never touch this */

    /* Log one line, prefixed by the host with the plugin name. */
    void (*log)(const struct kiln_host *host, int level, const char *fmt, ...) KILN_PRINTF(3, 4);

    /* The plugin's config table (e.g. one [[report]] entry).  Return 0 and
     * set *out when the key is present and has the type asked for; -ENOENT
     * when absent (out untouched); -EINVAL when of another type (the host
     * has then logged file:line:col: key: why).  Strings stay valid until
     * fini().  Durations accept "250ms", "5s", "10m", "1h" or integer seconds. */
    int (*config_string)(const struct kiln_host *host, const char *key, const char **out);
    int (*config_int)(const struct kiln_host *host, const char *key, int64_t *out);
    int (*config_bool)(const struct kiln_host *host, const char *key, int *out);
    int (*config_duration_ms)(const struct kiln_host *host, const char *key, uint64_t *out);

    /* Start a process (see struct kiln_spawn_request).  0 or -errno; cb is
     * called exactly once when it has ended and its output is drained.
     * *proc (may be NULL) can be passed to kill_process until cb runs. */
    int (*spawn)(const struct kiln_host *host, const struct kiln_spawn_request *req,
                 kiln_spawn_cb cb, void *arg, struct kiln_process **proc);
    /* Kill the process group of a running process; its cb still runs once. */
    void (*kill_process)(const struct kiln_host *host, struct kiln_process *proc);

    void *reserved[8];
    /* Fields added later go here, after `reserved`: check with KILN_HOST_HAS. */

    /* A list of strings: a TOML array of strings, or one string (a list of
     * one).  0 with *out (*n strings and a NULL after them, valid until
     * fini()) set; -ENOENT when absent; -EINVAL when of another type or an
     * item is not a string (logged as for config_string). */
    int (*config_strings)(const struct kiln_host *host, const char *key,
                          const char *const **out, size_t *n);
};

/* Non-zero when the host's table holds `field` (its size covers it): an
 * older daemon hands a shorter table to a plugin built against this header. */
#define KILN_HOST_HAS(host, field)                                                         \
    ((host)->size >= offsetof(struct kiln_host, field) + sizeof(((struct kiln_host *)0)->field))

/* ---- common shapes ---- */

typedef void (*kiln_done_cb)(void *arg, int status, const char *error);

enum kiln_outcome {
    KILN_PASSED = 0,
    KILN_FAILED = 1,
    KILN_ERROR = 2,   /* could not run: the test, or the job */
    KILN_SKIPPED = 3,
    KILN_TIMEOUT = 4,
    KILN_CANCELLED = 5,
};

struct kiln_test_result {
    const char *name;
    int outcome; /* enum kiln_outcome */
    uint64_t duration_ms;
    const char *message; /* failure text, may be NULL */
};

/* ---- vcs ---- */

struct kiln_vcs_poll_request {
    const char *url;       /* repository as configured */
    const char *branch;
    const char *since;     /* last commit handed over, or NULL/"" for none */
    uint32_t max_commits;  /* at most this many, the newest ones */
    const char *cache_dir; /* the plugin's own directory (mirrors), kept between polls;
                              NULL: the plugin's default */
};

struct kiln_vcs_poll_result {
    const char *head;             /* current head of the branch; NULL if the branch is gone */
    const char *const *commits;   /* commits after `since`, oldest first, first-parent order */
    size_t n_commits;
    int since_found;              /* 0 when `since` is not an ancestor of head (force-push) */
    int truncated;                /* 1 when more than max_commits were new */
};

/* status 0 with res, or -errno with error text and res NULL */
typedef void (*kiln_vcs_poll_cb)(void *arg, int status, const char *error,
                                 const struct kiln_vcs_poll_result *res);

struct kiln_vcs_prepare_request {
    const char *url;
    const char *commit;    /* full commit id to check out */
    const char *workspace; /* directory to create (must not exist) with that commit checked out */
    const char *cache_dir; /* the plugin's own directory for mirrors, kept between jobs */
};

struct kiln_vcs_ops {
    /* poll: what is new on a branch.
     *   req  borrowed; url and branch non-NULL, max_commits > 0, since NULL,
     *        "" or a full commit id; otherwise -EINVAL and no callback.
     *   op   may be NULL; set only when 0 is returned.
     *   cb   once, later: status 0 with res (head NULL when the branch is
     *        gone, commits oldest first) and error NULL; -ECANCELED after
     *        cancel(); another -errno (-ETIMEDOUT, -EIO, ...) with error a
     *        one-line reason; res NULL whenever status != 0.  res and its
     *        strings are valid during the callback only. */
    int (*poll)(void *self, const struct kiln_vcs_poll_request *req, kiln_vcs_poll_cb cb,
                void *arg, void **op);
    /* prepare: check out a commit into a new directory.
     *   req  borrowed; url, commit (a full id) and workspace non-NULL;
     *        cache_dir NULL for the plugin's default.
     *   op   may be NULL; set only when 0 is returned.
     *   cb   once, later: 0 with error NULL when workspace holds the commit;
     *        -ECANCELED after cancel(); another -errno with error a one-line
     *        reason (the workspace may then exist in part). */
    int (*prepare)(void *self, const struct kiln_vcs_prepare_request *req, kiln_done_cb cb,
                   void *arg, void **op);
};

/* ---- exec ---- */

struct kiln_exec_request {
    const char *workspace;          /* checked-out commit */
    const char *tests_dir;          /* relative to workspace, normally "tests" */
    uint64_t timeout_ms;            /* for the whole run; 0: none */
    const char *const *only;        /* run just these tests (sharding); NULL: all */
    size_t n_only;
};

struct kiln_exec_result {
    int outcome; /* of the whole run: PASSED, FAILED, ERROR, TIMEOUT, CANCELLED */
    const struct kiln_test_result *tests;
    size_t n_tests;
    const char *log; /* combined output, not NUL-terminated */
    size_t log_len;
    const char *error; /* why, for ERROR/TIMEOUT/CANCELLED; may be NULL */
};

typedef void (*kiln_exec_cb)(void *arg, const struct kiln_exec_result *res);
typedef void (*kiln_list_cb)(void *arg, int status, const char *error,
                             const char *const *tests, size_t n_tests);

struct kiln_exec_ops {
    /* run: the tests of a workspace, or of a shard.
     *   req  borrowed; workspace and tests_dir non-NULL; only NULL for every
     *        test, else n_only > 0 names (an empty shard is -EINVAL).  A
     *        shard runs exactly what a whole run would run of those tests,
     *        with the same outcomes; a name it does not find is reported as
     *        a test with outcome ERROR.
     *   op   may be NULL; set only when 0 is returned.
     *   cb   once, later, with res never NULL: outcome PASSED or FAILED (from
     *        the tests; error NULL), ERROR (the run itself failed: error
     *        says why, tests may be empty), TIMEOUT (timeout_ms ran out) or
     *        CANCELLED (after cancel()); tests hold what ran (with
     *        TIMEOUT/CANCELLED, the test that was running when a plugin can
     *        tell).  res and its strings are valid during the callback only. */
    int (*run)(void *self, const struct kiln_exec_request *req, kiln_exec_cb cb, void *arg,
               void **op);
    /* list: the test names a run would report, for sharding.  May be NULL:
     * the plugin cannot list tests, its commits are not sharded.
     *   req  as for run; only is ignored.
     *   op   may be NULL; set only when 0 is returned.
     *   cb   once, later: status 0 with the names (possibly none, a name
     *        possibly twice) and error NULL; -ECANCELED after cancel();
     *        -ETIMEDOUT or another -errno with error a reason (tests NULL). */
    int (*list)(void *self, const struct kiln_exec_request *req, kiln_list_cb cb, void *arg,
                void **op);
};

/* ---- report ---- */

struct kiln_report {
    const char *repo;
    const char *branch;
    const char *commit;
    int outcome; /* enum kiln_outcome of the whole commit */
    const char *runner;
    uint64_t job_id;
    uint32_t attempt;
    int64_t started_unix_ms;
    int64_t finished_unix_ms;
    const struct kiln_test_result *tests;
    size_t n_tests;
    const char *log;
    size_t log_len;
    const char *error; /* may be NULL */
};

struct kiln_report_ops {
    /* report: hand a commit's final result to the outside world.
     *   rep  borrowed (copy what outlives the call); commit non-NULL; repo,
     *        branch, runner and error may be NULL; tests/log NULL only when
     *        their count/length is 0.
     *   op   may be NULL; set only when 0 is returned.
     *   cb   once, later: 0 with error NULL once delivered; -ECANCELED after
     *        cancel(); another -errno with error a reason. */
    int (*report)(void *self, const struct kiln_report *rep, kiln_done_cb cb, void *arg,
                  void **op);
};

/* ---- report events (grown after ABI 1's first release) ----
 *
 * A report plugin that sets `events` in its descriptor (see struct
 * kiln_plugin) hears a commit's events, not only its final result: queued,
 * started, failing and finished.  The host then calls event() for every
 * kind, FINISHED included, and never report().  A plugin built without
 * `events` (an older header) keeps getting report() for final results.
 *
 * Delivery is the host's job: it keeps each event in a durable outbox per
 * receiver (one [[report]] table) until the plugin says it is delivered, and
 * calls again later, with back-off, after a failure.  So a plugin makes one
 * attempt per call and says how it went; it keeps no queue of its own.
 * Events of one commit reach one receiver in order, one at a time: a
 * FINISHED never goes out before that commit's QUEUED has been delivered. */

enum kiln_event_kind {
    KILN_EVENT_QUEUED = 1,   /* the commit waits for a runner */
    KILN_EVENT_STARTED = 2,  /* a runner took it */
    KILN_EVENT_FAILING = 3,  /* a test failed; the run goes on (tests: those failed so far) */
    KILN_EVENT_FINISHED = 4, /* the final result: what report() gets */
};

/* The outcome of a commit that has none yet (QUEUED, STARTED), and
 * previous_outcome of a branch's first commit. */
#define KILN_OUTCOME_NONE (-1)

struct kiln_report_event {
    uint32_t size; /* sizeof(struct kiln_report_event) of the host: see KILN_EVENT_HAS */
    int kind;      /* enum kiln_event_kind */
    /* The commit as it is at this event: repo, branch, commit, job_id,
     * attempt always; runner from STARTED on; outcome KILN_OUTCOME_NONE for
     * QUEUED and STARTED, KILN_FAILED for FAILING, the result for FINISHED;
     * tests, log, error and finished_unix_ms for FINISHED (FAILING: the
     * failed tests so far). */
    const struct kiln_report *report;
    /* The outbox entry's id: the same on every attempt to deliver this
     * event to this receiver, across dispatcher restarts (an idempotency key
     * for receivers, e.g. a delivery header). */
    uint64_t delivery_id;
    /* Attempts made before this one (0 on the first). */
    uint32_t retries;
    int64_t event_unix_ms;   /* when the event happened */
    int64_t queued_unix_ms;  /* when the commit was queued */
    /* The commit's page on the dispatcher's web page ([http] base_url +
     * "/commit/<id>"), or NULL when no base_url is configured. */
    const char *url;
    /* The final outcome of the branch's previous finished commit (before
     * this one), or KILN_OUTCOME_NONE: lets a plugin tell "broke" and
     * "fixed" from "still failing". */
    int previous_outcome;
    /* Tests counted by outcome (index: enum kiln_outcome), FINISHED only
     * (and FAILING: counted so far). */
    uint32_t counts[6];
    /* Fields added later go here: check with KILN_EVENT_HAS. */
};

#define KILN_EVENT_HAS(ev, field)                                                          \
    ((ev)->size >= offsetof(struct kiln_report_event, field) +                             \
                       sizeof(((struct kiln_report_event *)0)->field))

/* How one attempt to deliver went. */
struct kiln_delivery {
    /* 0: delivered (the receiver has it; never sent again).
     * -ECANCELED: after cancel(); the host tries again later.
     * another -errno: not delivered this time (-ECONNREFUSED, -ETIMEDOUT, an
     * HTTP 5xx or 429 as -EAGAIN, ...): the host tries again after back-off. */
    int status;
    /* 1 with a negative status: the receiver refused it for good (an HTTP
     * 4xx other than 429, a bad address): logged with `error`, counted, and
     * not sent again. */
    int rejected;
    /* With a negative status: the receiver asked to wait this long before
     * the next attempt (HTTP Retry-After); 0: the host's own back-off. */
    uint64_t retry_after_ms;
    /* One line (for a refusal: the response's status and first bytes), NULL
     * when delivered.  The host logs it; never put a secret in it. */
    const char *error;
};

typedef void (*kiln_delivery_cb)(void *arg, const struct kiln_delivery *res);

struct kiln_report_event_ops {
    uint32_t size; /* sizeof(struct kiln_report_event_ops) of the plugin */
    /* wants: non-zero when this instance (its config: e.g. an `events` key)
     * wants events of `kind`.  Asked when the event happens, before anything
     * is queued for it; must not block.  NULL: every kind. */
    int (*wants)(void *self, int kind);
    /* event: make one attempt to deliver one event.
     *   ev   borrowed (copy what outlives the call); ev->report non-NULL as
     *        described there.
     *   op   may be NULL; set only when 0 is returned.
     *   cb   once, later, with res never NULL (see struct kiln_delivery).
     * A non-zero return (could not start) counts as a failed attempt. */
    int (*event)(void *self, const struct kiln_report_event *ev, kiln_delivery_cb cb,
                 void *arg, void **op);
};

/* ---- the descriptor ---- */

struct kiln_plugin {
    uint32_t abi;  /* KILN_PLUGIN_ABI */
    uint32_t size; /* sizeof(struct kiln_plugin) */
    int kind;      /* enum kiln_plugin_kind */
    const char *name;        /* equals the file stem: "git" for git.so */
    const char *description; /* one line */
    /* keys the plugin's config table may hold, NULL-terminated; others are
     * reported to the operator as unknown */
    const char *const *config_keys;

    /* Read config through host, allocate state.  0 with *self set, or
     * -errno (logged; then fini is not called).  host stays valid until fini. */
    int (*init)(const struct kiln_host *host, void **self);
    /* Release state.  No operation is running by then. */
    void (*fini)(void *self);
    /* Cancel a started operation (op as set by its start call, never NULL
     * from the host); its callback then runs once, later (never from inside
     * cancel), with -ECANCELED or CANCELLED, or with its real result when
     * it was already ending.  An op whose callback has run is ignored. */
    void (*cancel)(void *self, void *op);

    /* exactly the one matching `kind` is non-NULL (a report plugin that
     * sets `events` below may leave `report` NULL) */
    const struct kiln_vcs_ops *vcs;
    const struct kiln_exec_ops *exec;
    const struct kiln_report_ops *report;

    void *reserved[4];

    /* Grown after ABI 1's first release: a descriptor from an older header
     * ends before these (its size says so; the host checks with
     * KILN_PLUGIN_HAS).  A report plugin that hears events sets `events`
     * (its report op may then be NULL). */
    const struct kiln_report_event_ops *events;
};

#define KILN_PLUGIN_HAS(desc, field)                                                       \
    ((desc)->size >= offsetof(struct kiln_plugin, field) + sizeof(((struct kiln_plugin *)0)->field))

/* The size of ABI 1's first descriptor: a host accepts any size from here. */
#define KILN_PLUGIN_SIZE_V1_0 (offsetof(struct kiln_plugin, reserved) + 4 * sizeof(void *))

typedef const struct kiln_plugin *(*kiln_plugin_entry_fn)(void);

/* The one symbol a plugin exports. */
KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_v1(void);

/* Names of the outcomes, as they appear in results and on the wire. */
static inline const char *kiln_outcome_name(int outcome)
{
    switch (outcome) {
    case KILN_PASSED: return "passed";
    case KILN_FAILED: return "failed";
    case KILN_ERROR: return "error";
    case KILN_SKIPPED: return "skipped";
    case KILN_TIMEOUT: return "timeout";
    case KILN_CANCELLED: return "cancelled";
    default: return "unknown";
    }
}

#ifdef __cplusplus
}
#endif

#endif /* KILN_PLUGIN_H */
