// email — the report plugin that mails a commit's result through
// sendmail(8) (`sendmail -t -oi`, the message on its stdin): by default
// only when a branch broke or was fixed (mode "change"), or for every
// failed result ("failing"), or for every result ("all").  It hears
// FINISHED events (events op) and, from a host older than report events,
// final results (report op); such a host does not say how the branch's
// previous commit ended, so the plugin remembers it itself (in memory: the
// first result after a restart counts as the branch's first).
//
// One op per result: it decides on the loop whether mail is due, builds
// the message (mail_message.cpp) and pipes it to sendmail (sendmail.cpp).
// A result that needs no mail completes at once, from a zero timer.
#include <cerrno>
#include <chrono>
#include <map>
#include <string>
#include <unistd.h>

#include <kiln/plugin.h>
#include <uv.h>

#include "config_list.hpp"
#include "mail_message.hpp"
#include "op_set.hpp"
#include "report_copy.hpp"
#include "sendmail.hpp"

namespace {

struct Op;

struct Branch { // what report() remembers of a branch
    std::string commit;
    int outcome = KILN_OUTCOME_NONE, previous = KILN_OUTCOME_NONE;
};

struct Self {
    const kiln_host *host = nullptr;
    std::string sendmail = "/usr/sbin/sendmail";
    kiln_mail::Mode mode = kiln_mail::Mode::change;
    kiln_mail::Envelope envelope;
    uint64_t timeout_ms = 60000;
    std::map<std::string, Branch> branches; // by repo '\0' branch, report() only
    kiln_ops::OpSet<Op> live;
};

struct Op {
    Self *self = nullptr;
    kiln_report_copy::Completion done;
    kiln_report_copy::Report rep;
    uv_timer_t timer{};          // completes an op that sends nothing
    kiln_sendmail::Run *run = nullptr;
    int status = 0;              // for the timer's completion
    bool rejected = false;
    std::string why;
};

void on_op_closed(uv_handle_t *h) noexcept { delete static_cast<Op *>(h->data); }

void complete(Op *op, int status, const std::string &why, bool rejected) noexcept
{
    Self *s = op->self;
    s->live.remove(op);
    if (status < 0 && status != -ECANCELED)
        s->host->log(s->host, KILN_LOG_WARNING, "mail for %.12s: %s", op->rep.commit.c_str(),
                     why.c_str());
    op->done.finish(status, why.c_str(), rejected);
    uv_close(reinterpret_cast<uv_handle_t *>(&op->timer), on_op_closed);
}

void on_sent(void *arg, int status, const std::string &why) noexcept
{
    Op *op = static_cast<Op *>(arg);
    op->run = nullptr;
    if (status == 0)
        op->self->host->log(op->self->host, KILN_LOG_INFO, "mail for %.12s handed to %s",
                            op->rep.commit.c_str(), op->self->sendmail.c_str());
    complete(op, status, why, false);
}

void on_no_mail(uv_timer_t *t) noexcept
{
    Op *op = static_cast<Op *>(t->data);
    complete(op, op->status, op->why, op->rejected);
}

int64_t now_unix_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Fills the op in and starts it: sendmail, or the zero timer.  Everything
// that may throw comes first: once the timer is initialised the op must
// complete (and close it).
int begin(Self *s, Op *op)
{
    std::string verdict, message;
    if (!kiln_report_copy::is_hex_id(op->rep.commit)) {
        op->status = -EINVAL, op->rejected = true; // no attempt can mend it
        op->why = "not a commit id: \"" + op->rep.commit.substr(0, 64) + "\"";
    } else {
        verdict = kiln_mail::verdict(s->mode, op->rep.previous_outcome, op->rep.outcome);
    }
    if (!verdict.empty()) {
        message = kiln_mail::build_message(op->rep, s->envelope, verdict, now_unix_ms());
        int rc = kiln_sendmail::start(s->host->loop, {s->sendmail, "-t", "-oi"},
                                      std::move(message), s->timeout_ms, on_sent, op, &op->run);
        if (rc < 0)
            return rc; // nothing started, no callback
    }
    uv_timer_init(s->host->loop, &op->timer);
    op->timer.data = op;
    if (verdict.empty())
        uv_timer_start(&op->timer, on_no_mail, 0, 0);
    return 0;
}

// ---- the ABI ----

int email_report(void *self, const kiln_report *rep, kiln_done_cb cb, void *arg,
                 void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!cb || !rep || !rep->commit || (!rep->tests && rep->n_tests) || (!rep->log && rep->log_len))
        return -EINVAL;
    return s->live.start(op, [&](Op *o) {
        o->self = s;
        o->done.done = cb;
        o->done.arg = arg;
        o->rep.assign(*rep);
        // The branch's previous result, as this instance saw it; the same
        // commit again (a retry) keeps the previous it had.
        Branch &b = s->branches[o->rep.repo + '\0' + o->rep.branch];
        if (b.commit != o->rep.commit)
            b.previous = b.outcome;
        b.commit = o->rep.commit;
        b.outcome = o->rep.outcome;
        o->rep.previous_outcome = b.previous;
        return begin(s, o);
    });
}

int email_wants(void *, int kind) noexcept { return kind == KILN_EVENT_FINISHED; }

int email_event(void *self, const kiln_report_event *ev, kiln_delivery_cb cb, void *arg,
                void **op) noexcept
{
    Self *s = static_cast<Self *>(self);
    if (!cb || !ev || !ev->report || ev->kind != KILN_EVENT_FINISHED || !ev->report->commit ||
        (!ev->report->tests && ev->report->n_tests) || (!ev->report->log && ev->report->log_len))
        return -EINVAL;
    return s->live.start(op, [&](Op *o) {
        o->self = s;
        o->done.delivered = cb;
        o->done.arg = arg;
        o->rep.assign(*ev);
        return begin(s, o);
    });
}

void email_cancel(void *self, void *op) noexcept
{
    Op *o = static_cast<Self *>(self)->live.running(op);
    if (!o)
        return;
    if (o->run) {
        kiln_sendmail::cancel(o->run); // on_sent follows, with -ECANCELED
    } else {
        o->status = -ECANCELED, o->rejected = false, o->why = "cancelled";
    }
}

// Reads and checks the keys; -EINVAL (logged, naming the key) when one is wrong.
int configure(const kiln_host *host, Self *s)
{
    const char *text = nullptr;
    int rc = host->config_string(host, "sendmail", &text);
    if (rc == 0 && !*text)
        rc = -EINVAL, host->log(host, KILN_LOG_ERR, "sendmail: must name a program");
    if (rc == 0)
        s->sendmail = text;
    else if (rc != -ENOENT)
        return rc;

    std::string to;
    rc = kiln_config::read_list(host, "to", to);
    if (rc == -ENOENT) {
        host->log(host, KILN_LOG_ERR,
                  "to: required: the addresses mail goes to, [\"a@example.org\", \"b@example.org\"]");
        return -EINVAL;
    }
    std::string bad;
    if (rc < 0)
        return rc;
    if (!kiln_mail::parse_addresses(to, s->envelope.to, bad)) {
        host->log(host, KILN_LOG_ERR, "to: \"%s\" is not a mail address (local@domain)",
                  bad.c_str());
        return -EINVAL;
    }

    char name[256];
    size_t len = sizeof name;
    s->envelope.hostname = uv_os_gethostname(name, &len) == 0 ? name : "localhost";
    s->envelope.from = "kiln@" + s->envelope.hostname;
    rc = host->config_string(host, "from", &text);
    if (rc == 0 && !kiln_mail::valid_address(text)) {
        host->log(host, KILN_LOG_ERR, "from: \"%s\" is not a mail address (local@domain)", text);
        return -EINVAL;
    }
    if (rc == 0)
        s->envelope.from = text;
    else if (rc != -ENOENT)
        return rc;

    rc = host->config_string(host, "mode", &text);
    if (rc == 0 && !kiln_mail::parse_mode(text, s->mode)) {
        host->log(host, KILN_LOG_ERR, "mode: \"%s\": must be \"change\", \"failing\" or \"all\"",
                  text);
        return -EINVAL;
    }
    s->envelope.mode = rc == 0 ? text : "change";
    if (rc < 0 && rc != -ENOENT)
        return rc;

    rc = host->config_duration_ms(host, "timeout", &s->timeout_ms);
    if (rc == 0 && s->timeout_ms == 0)
        rc = -EINVAL, host->log(host, KILN_LOG_ERR, "timeout: must be more than 0");
    if (rc < 0 && rc != -ENOENT)
        return rc;

    // Not fatal: an MTA may be installed after the dispatcher starts; each
    // mail then fails (and is retried) with the reason.
    if (s->sendmail[0] == '/' && access(s->sendmail.c_str(), X_OK) != 0)
        host->log(host, KILN_LOG_WARNING, "sendmail: %s is not an executable program (no MTA?)",
                  s->sendmail.c_str());
    return 0;
}

int email_init(const kiln_host *host, void **self) noexcept
{
    Self *s = new (std::nothrow) Self();
    if (!s)
        return -ENOMEM;
    int rc;
    try {
        s->host = host;
        rc = configure(host, s);
    } catch (...) {
        rc = -ENOMEM;
    }
    if (rc < 0) {
        delete s;
        return rc;
    }
    *self = s;
    return 0;
}

void email_fini(void *self) noexcept { delete static_cast<Self *>(self); }

const char *const config_keys[] = {"sendmail", "to", "from", "mode", "timeout", nullptr};
const kiln_report_ops report_ops = {email_report};
const kiln_report_event_ops event_ops = {sizeof(kiln_report_event_ops), email_wants, email_event};
const kiln_plugin descriptor = {
    KILN_PLUGIN_ABI, sizeof(kiln_plugin), KILN_PLUGIN_REPORT, "email",
    "mail through sendmail(8) when a branch breaks or is fixed", config_keys, email_init,
    email_fini, email_cancel, nullptr, nullptr, &report_ops, {}, &event_ops};

} // namespace

extern "C" KILN_PLUGIN_EXPORT const kiln_plugin *kiln_plugin_v1(void) { return &descriptor; }
