// junit — the report plugin that writes JUnit XML: DIR/<commit>.xml, one
// file per commit, replaced by a newer attempt (see junit_xml.hpp for the
// document).  It hears FINISHED events (events op) and, from a host older
// than report events, final results (report op): the same file either way.
//
// As files.cpp: the result is copied into a work item on the loop, a
// uv_queue_work job builds the XML and writes it atomically (temp file,
// fsync, rename, fsync DIR), and after_work calls back on the loop.
#include <atomic>
#include <cerrno>
#include <string>

#include <kiln/plugin.h>
#include <uv.h>

#include "atomic_write.hpp"
#include "commit_id.hpp"
#include "junit_xml.hpp"
#include "op_set.hpp"
#include "report_copy.hpp"

namespace {

struct Work;

struct Self {
    const kiln_host *host = nullptr;
    std::string dir;
    kiln_ops::OpSet<Work> live; // the files being written
};

struct Work {
    uv_work_t req;
    Self *self = nullptr;
    kiln_report_copy::Completion done;
    std::atomic<bool> cancelled{false};
    bool invalid = false; // an event no attempt can write: refused for good
    std::string dir;
    kiln_report_copy::Report rep;
    int status = 0; // set by the worker
    std::string why;
};

void do_work(uv_work_t *req) noexcept
{
    Work *w = static_cast<Work *>(req->data);
    if (w->invalid) {
        w->status = -EINVAL;
        w->why = "commit \"" + w->rep.commit.substr(0, 64) + "\" is not a hex id";
        return;
    }
    try {
        std::string xml = kiln_junit::junit_xml(w->rep);
        w->status = kiln_atomic_write::make_dirs(w->dir, w->why);
        if (w->status == 0)
            w->status = kiln_atomic_write::write_file(w->dir, w->rep.commit + ".xml", xml,
                                                      w->cancelled, w->why);
    } catch (...) {
        w->status = -ENOMEM;
        w->why = "out of memory";
    }
}

void after_work(uv_work_t *req, int status) noexcept
{
    Work *w = static_cast<Work *>(req->data);
    Self *s = w->self;
    s->live.remove(w);
    int rc = status == UV_ECANCELED || w->cancelled.load() ? -ECANCELED : w->status;
    if (rc < 0 && rc != -ECANCELED)
        s->host->log(s->host, KILN_LOG_ERR, "%s.xml: %s", w->rep.commit.c_str(), w->why.c_str());
    w->done.finish(rc, rc == -ECANCELED ? "cancelled" : w->why.c_str(), w->invalid);
    delete w;
}

template <class Copy>
int start(Self *s, kiln_report_copy::Completion done, bool invalid, void **op, Copy &&copy)
{
    return s->live.start(op, [&](Work *w) {
        w->self = s;
        w->invalid = invalid;
        w->done = done;
        w->dir = s->dir;
        copy(w->rep);
        w->req.data = w;
        return uv_queue_work(s->host->loop, &w->req, do_work, after_work);
    });
}

bool valid(const kiln_report *rep)
{
    // The commit becomes a file name: hex only, no '/', no "..".
    return rep && rep->commit && kiln_commit::is_hex_id(rep->commit) &&
           (rep->tests || !rep->n_tests) && (rep->log || !rep->log_len);
}

// ---- the ABI ----

int junit_report(void *self, const kiln_report *rep, kiln_done_cb cb, void *arg,
                 void **op) noexcept
{
    if (!cb || !valid(rep))
        return -EINVAL;
    kiln_report_copy::Completion done;
    done.done = cb;
    done.arg = arg;
    return start(static_cast<Self *>(self), done, false, op,
                 [&](kiln_report_copy::Report &r) { r.assign(*rep); });
}

int junit_wants(void *, int kind) noexcept { return kind == KILN_EVENT_FINISHED; }

int junit_event(void *self, const kiln_report_event *ev, kiln_delivery_cb cb, void *arg,
                void **op) noexcept
{
    // A FINISHED event whose commit cannot name a file never will: it is
    // refused for good (rejected) rather than failed, which the host retries.
    if (!cb || !ev || !ev->report || ev->kind != KILN_EVENT_FINISHED)
        return -EINVAL;
    kiln_report_copy::Completion done;
    done.delivered = cb;
    done.arg = arg;
    bool invalid = !valid(ev->report);
    return start(static_cast<Self *>(self), done, invalid, op, [&](kiln_report_copy::Report &r) {
        if (invalid)
            r.commit = ev->report->commit ? ev->report->commit : "";
        else
            r.assign(*ev);
    });
}

// A queued job is taken off the pool (after_work then sees UV_ECANCELED); a
// running one stops before its rename.  Either way after_work calls back
// once, with -ECANCELED.
void junit_cancel(void *self, void *op) noexcept
{
    Work *w = static_cast<Self *>(self)->live.running(op);
    if (!w)
        return;
    w->cancelled.store(true);
    uv_cancel(reinterpret_cast<uv_req_t *>(&w->req));
}

int junit_init(const kiln_host *host, void **self) noexcept
{
    try {
        const char *dir = nullptr;
        int rc = host->config_string(host, "dir", &dir);
        if (rc == -ENOENT || (rc == 0 && !*dir)) {
            host->log(host, KILN_LOG_ERR, "dir: required: the directory JUnit XML is written to");
            return -EINVAL;
        }
        if (rc < 0)
            return rc;
        Self *s = new Self();
        s->host = host;
        s->dir = dir;
        while (s->dir.size() > 1 && s->dir.back() == '/')
            s->dir.pop_back();
        *self = s;
        return 0;
    } catch (...) {
        return -ENOMEM;
    }
}

void junit_fini(void *self) noexcept { delete static_cast<Self *>(self); }

const char *const config_keys[] = {"dir", nullptr};
const kiln_report_ops report_ops = {junit_report};
const kiln_report_event_ops event_ops = {sizeof(kiln_report_event_ops), junit_wants, junit_event};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_REPORT, "junit",
    "JUnit XML per commit: DIR/<commit>.xml", config_keys, junit_init, junit_fini,
    junit_cancel, nullptr, nullptr, &report_ops, {}, &event_ops};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
