/*
 * marker — an example Kiln report plugin built out of tree, against the
 * installed <kiln/plugin.h> only (pkg-config kiln-plugin; see Makefile).
 *
 * For each final result it appends one line "COMMIT OUTCOME REPO BRANCH" to
 * the file named by its `file` key, e.g. in kiln-dispatcher's config:
 *
 *     [[report]]
 *     plugin = "marker"
 *     file = "/var/lib/kiln/marker.log"
 *
 * The file is written with uv_fs_* (open, write, close on the thread pool),
 * so the dispatcher's loop never blocks, and the callback runs from the loop
 * once the line is written, as the ABI's contract asks.
 */
#define _POSIX_C_SOURCE 200809L /* strdup; and <uv.h> needs POSIX's pthread types */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kiln/plugin.h>

struct marker {
    const struct kiln_host *host;
    char *file;
};

/* One report being written: open, write, close, then the callback. */
struct op {
    struct marker *self;
    uv_fs_t req;
    uv_file fd;
    char *line;
    uv_buf_t buf;
    int status;
    int cancelled;
    kiln_done_cb cb;
    void *arg;
};

static const char *outcome_name(int outcome)
{
    static const char *const names[] = {"passed", "failed", "error",
                                        "skipped", "timeout", "cancelled"};
    return outcome >= 0 && outcome < 6 ? names[outcome] : "unknown";
}

static void finish(struct op *op)
{
    int status = op->cancelled ? -ECANCELED : op->status;
    const char *error = status == 0 ? NULL : uv_strerror(status);
    if (status != 0)
        op->self->host->log(op->self->host, KILN_LOG_ERR, "%s: %s", op->self->file, error);
    op->cb(op->arg, status, error);
    free(op->line);
    free(op);
}

static void on_close(uv_fs_t *req)
{
    struct op *op = req->data;
    if (req->result < 0 && op->status == 0)
        op->status = (int)req->result;
    uv_fs_req_cleanup(req);
    finish(op);
}

static void on_write(uv_fs_t *req)
{
    struct op *op = req->data;
    if (req->result < 0)
        op->status = (int)req->result;
    uv_fs_req_cleanup(req);
    uv_fs_close(op->self->host->loop, &op->req, op->fd, on_close);
}

static void on_open(uv_fs_t *req)
{
    struct op *op = req->data;
    ssize_t fd = req->result;
    uv_fs_req_cleanup(req);
    if (fd < 0) {
        op->status = (int)fd;
        finish(op);
        return;
    }
    op->fd = (uv_file)fd;
    op->buf = uv_buf_init(op->line, (unsigned)strlen(op->line));
    uv_fs_write(op->self->host->loop, &op->req, op->fd, &op->buf, 1, -1, on_write);
}

static int marker_report(void *self_, const struct kiln_report *rep, kiln_done_cb cb, void *arg,
                         void **opp)
{
    struct marker *self = self_;
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return -ENOMEM;
    const char *repo = rep->repo ? rep->repo : "-";
    const char *branch = rep->branch ? rep->branch : "-";
    int n = snprintf(NULL, 0, "%s %s %s %s\n", rep->commit, outcome_name(rep->outcome), repo,
                     branch);
    op->line = malloc((size_t)n + 1);
    if (!op->line) {
        free(op);
        return -ENOMEM;
    }
    snprintf(op->line, (size_t)n + 1, "%s %s %s %s\n", rep->commit, outcome_name(rep->outcome),
             repo, branch);
    op->self = self;
    op->cb = cb;
    op->arg = arg;
    op->req.data = op;
    int rc = uv_fs_open(self->host->loop, &op->req, self->file, O_WRONLY | O_CREAT | O_APPEND,
                        0644, on_open);
    if (rc < 0) {
        free(op->line);
        free(op);
        return rc;
    }
    if (opp)
        *opp = op;
    return 0;
}

/* The write is short and already under way: let it finish, then report the
 * cancellation through the callback (still exactly once). */
static void marker_cancel(void *self, void *op)
{
    (void)self;
    ((struct op *)op)->cancelled = 1;
}

static int marker_init(const struct kiln_host *host, void **out)
{
    const char *file = NULL;
    int rc = host->config_string(host, "file", &file);
    if (rc == -ENOENT) {
        host->log(host, KILN_LOG_ERR, "file: required key is missing");
        return -EINVAL;
    }
    if (rc < 0)
        return rc; /* the host has logged where and why */
    struct marker *self = calloc(1, sizeof *self);
    if (!self || !(self->file = strdup(file))) {
        free(self);
        return -ENOMEM;
    }
    self->host = host;
    *out = self;
    return 0;
}

static void marker_fini(void *self_)
{
    struct marker *self = self_;
    free(self->file);
    free(self);
}

static const struct kiln_report_ops report_ops = {marker_report};
static const char *const config_keys[] = {"file", NULL};

static const struct kiln_plugin descriptor = {
    .abi = KILN_PLUGIN_ABI,
    .size = sizeof(struct kiln_plugin),
    .kind = KILN_PLUGIN_REPORT,
    .name = "marker",
    .description = "appends COMMIT OUTCOME REPO BRANCH to a file",
    .config_keys = config_keys,
    .init = marker_init,
    .fini = marker_fini,
    .cancel = marker_cancel,
    .report = &report_ops,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
