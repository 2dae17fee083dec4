// kiln-observer's memory: the handed-over state file (format, parse with
// file:line errors, load, coalesced async saves) and the outbox's ack-order
// rule (a watch's handed-over commit advances only past commits that, with
// every earlier one of the watch, are acknowledged).
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <uv.h>

#include <kiln/atomic_file.hpp>

#include "observer_state.hpp"
#include "outbox.hpp"

#include "test.hpp" // last: cmocka's fail() macro breaks <ios>

using namespace kiln;

namespace {

const std::string A(40, 'a'), B(40, 'b'), C(40, 'c'), D(64, 'd');

// The error of parsing `text` as file "f", or "" when it parses.
std::string parse_error(const std::string &text)
{
    HandedOver out;
    std::string error;
    return parse_handed_over(text, "f", out, error) ? "" : error;
}

bool starts_with(const std::string &s, const std::string &prefix)
{
    return s.compare(0, prefix.size(), prefix) == 0;
}

void test_round_trip(void **)
{
    HandedOver state = {{{"example", "main"}, A},
                        {{"example", "release/1.x"}, B},
                        {{"other.repo", "main"}, D}};
    std::string text = format_handed_over(state);
    assert_true(starts_with(text, "#"));
    assert_non_null(strstr(text.c_str(), ("\nexample release/1.x " + B + "\n").c_str()));
    HandedOver back;
    std::string error;
    assert_true(parse_handed_over(text, "f", back, error));
    assert_true(back == state);

    HandedOver empty;
    assert_true(parse_handed_over(format_handed_over({}), "f", empty, error));
    assert_true(empty.empty());
}

void test_comments_blank_lines_and_last_newline(void **)
{
    HandedOver out;
    std::string error;
    assert_true(parse_handed_over("# x\n\nr main " + A + "\n# y\nr dev " + B, "f", out, error));
    assert_int_equal(out.size(), 2);
    assert_string_equal(S(out[WatchKey("r", "dev")]), S(B));
}

void test_corrupt_lines(void **)
{
    // Each error names the file and the line, and says what is wrong.
    assert_string_equal(S(parse_error("# h\nr main\n")),
                        "f:2: expected \"REPO BRANCH COMMIT\" separated by single spaces, got 2 "
                        "field(s)");
    assert_true(starts_with(parse_error("r main " + A + " extra\n"), "f:1: expected"));
    assert_true(starts_with(parse_error("r  main " + A + "\n"), "f:1: expected"));
    assert_true(starts_with(parse_error("r main " + A + " \n"), "f:1: expected"));
    assert_true(starts_with(parse_error("\tr main " + A + "\n"), "f:1: '\tr' is not a valid "
                                                                   "repository name"));
    assert_string_equal(S(parse_error("r main " + A + "\n../x main " + A + "\n")),
                        "f:2: '../x' is not a valid repository name");
    assert_true(starts_with(parse_error("r -x " + A + "\n"), "f:1: '-x' is not a valid branch"));
    assert_true(starts_with(parse_error("r main " + std::string(40, 'A') + "\n"),
                            "f:1: '" + std::string(40, 'A') + "' is not a commit id"));
    assert_true(starts_with(parse_error("r main abc123\n"), "f:1: 'abc123' is not a commit id"));
    assert_true(starts_with(parse_error("r main " + A + "\r\n"), "f:1: '"));
    assert_string_equal(S(parse_error("r main " + A + "\n\nr main " + B + "\n")),
                        "f:3: repo r branch main is listed twice");

    // A failed parse leaves the output untouched.
    HandedOver out = {{{"keep", "main"}, A}};
    std::string error;
    assert_false(parse_handed_over("r main " + A + "\nbad\n", "f", out, error));
    assert_int_equal(out.size(), 1);
}

void test_ack_order_in_order(void **)
{
    Outbox box;
    JobSpec s;
    s.commit = A;
    uint64_t a = box.push(0, s);
    s.commit = B;
    uint64_t b = box.push(0, s);
    assert_true(b > a);
    assert_int_equal(box.size(), 2);

    Outbox::AckResult r = box.ack(a);
    assert_true(r.known);
    assert_string_equal(S(r.commit), S(A));
    assert_true(r.advance.has_value());
    assert_int_equal(r.advance->watch, 0);
    assert_string_equal(S(r.advance->commit), S(A));

    r = box.ack(b);
    assert_true(r.advance.has_value());
    assert_string_equal(S(r.advance->commit), S(B));
    assert_int_equal(box.size(), 0);

    // A second ack for the same request (a resend acked twice) changes nothing.
    r = box.ack(b);
    assert_false(r.known);
    assert_false(r.advance.has_value());
    assert_false(box.ack(999).known);
}

// Push a commit of this watch; its request id.
uint64_t push(Outbox &box, size_t watch, const std::string &commit)
{
    JobSpec s;
    s.commit = commit;
    return box.push(watch, s);
}

void test_ack_order_out_of_order(void **)
{
    Outbox box;
    uint64_t a = push(box, 0, A), b = push(box, 0, B), c = push(box, 0, C);
    uint64_t other = push(box, 1, D); // another watch: not held back by watch 0

    // C before A and B: nothing is handed over, A may still be lost.
    Outbox::AckResult r = box.ack(c);
    assert_true(r.known);
    assert_false(r.advance.has_value());
    assert_int_equal(box.pending(0), 2);

    r = box.ack(other);
    assert_true(r.advance.has_value());
    assert_int_equal(r.advance->watch, 1);
    assert_string_equal(S(r.advance->commit), S(D));

    // A: the gap before it is closed, but B is still missing.
    r = box.ack(a);
    assert_true(r.advance.has_value());
    assert_string_equal(S(r.advance->commit), S(A));

    // B closes the last gap: straight to C, acked long ago.
    r = box.ack(b);
    assert_true(r.advance.has_value());
    assert_int_equal(r.advance->watch, 0);
    assert_string_equal(S(r.advance->commit), S(C));
    assert_int_equal(box.pending(0), 0);
    assert_int_equal(box.size(), 0);
}

void test_resend_after_reconnect(void **)
{
    Outbox box;
    JobSpec s;
    s.commit = A;
    uint64_t a = box.push(0, s);
    s.commit = B;
    box.push(0, s);
    assert_false(box.awaiting_ack());

    std::vector<Commit> sent = box.take_unsent();
    assert_int_equal(sent.size(), 2);
    assert_string_equal(S(sent[0].spec.commit), S(A)); // enqueue order
    assert_true(box.awaiting_ack());
    assert_int_equal(box.take_unsent().size(), 0); // not twice on one connection

    box.ack(a);
    box.mark_all_unsent(); // the connection dropped
    assert_false(box.awaiting_ack());
    sent = box.take_unsent();
    assert_int_equal(sent.size(), 1); // only what is still unacknowledged
    assert_string_equal(S(sent[0].spec.commit), S(B));
    box.ack(sent[0].id);
    assert_false(box.awaiting_ack());
}

// The dispatcher refuses a commit (max_queued_per_repo): it stays, is no
// longer awaited on that connection, and goes again after a reconnect with
// the later ones, in enqueue order; the watch's handed-over commit waits.
void test_refused_commit_is_kept_and_resent_in_order(void **)
{
    Outbox box;
    uint64_t a = push(box, 0, A), b = push(box, 0, B), c = push(box, 0, C);
    assert_null(box.refuse(b)); // not sent yet: not an answer to anything
    assert_int_equal(box.take_unsent().size(), 3);

    const Commit *refused = box.refuse(b);
    assert_non_null(refused);
    assert_string_equal(S(refused->spec.commit), S(B));
    assert_null(box.refuse(b));     // once per connection
    assert_null(box.refuse(12345)); // not a commit: another request's error
    assert_non_null(box.refuse(c));
    assert_int_equal(box.refused(), 2);
    assert_int_equal(box.size(), 3);
    assert_true(box.awaiting_ack()); // a is still awaited

    Outbox::AckResult r = box.ack(a);
    assert_false(r.was_refused);
    assert_true(r.advance.has_value());
    assert_string_equal(S(r.advance->commit), S(A));
    assert_false(box.awaiting_ack()); // only refused ones left: nothing awaited
    assert_int_equal(box.take_unsent().size(), 0); // not again on this connection
    assert_int_equal(box.pending(0), 2);

    box.mark_all_unsent(); // the reconnect that offers them again
    assert_int_equal(box.refused(), 0);
    std::vector<Commit> again = box.take_unsent();
    assert_int_equal(again.size(), 2);
    assert_int_equal(again[0].id, b); // same ids, same order
    assert_int_equal(again[1].id, c);
    assert_string_equal(S(again[0].spec.commit), S(B));

    // Refused once more (the queue is still full), then accepted.
    assert_non_null(box.refuse(b));
    assert_non_null(box.refuse(c));
    box.mark_all_unsent();
    assert_int_equal(box.take_unsent().size(), 2);
    r = box.ack(b);
    assert_true(r.was_refused);
    assert_string_equal(S(r.advance->commit), S(B));
    r = box.ack(c);
    assert_true(r.was_refused);
    assert_string_equal(S(r.advance->commit), S(C));
    assert_int_equal(box.size(), 0);
    assert_int_equal(box.refused(), 0);
    assert_false(box.awaiting_ack());
}

// ---- StateFile, on disk ----

struct Disk {
    std::string dir;
    uv_loop_t loop;
};

int disk_setup(void **state)
{
    auto *d = new Disk;
    char tmpl[] = "/tmp/kiln-observer-state-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    d->dir = tmpl;
    uv_loop_init(&d->loop);
    *state = d;
    return 0;
}

int disk_teardown(void **state)
{
    auto *d = static_cast<Disk *>(*state);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&d->loop);
    std::error_code ec;
    std::filesystem::remove_all(d->dir, ec);
    delete d;
    return rc == 0 ? 0 : -1;
}

void test_missing_file_is_empty_state(void **state)
{
    auto *d = static_cast<Disk *>(*state);
    StateFile file(&d->loop, d->dir + "/sub/handed-over");
    HandedOver out = {{{"x", "main"}, A}};
    std::string error;
    assert_true(file.load(out, error));
    assert_true(out.empty());
    // write_now creates the missing directory.
    assert_int_equal(file.write_now({{{"x", "main"}, B}}), 0);
    assert_true(file.load(out, error));
    assert_string_equal(S(out[WatchKey("x", "main")]), S(B));
}

void test_corrupt_or_unreadable_file(void **state)
{
    auto *d = static_cast<Disk *>(*state);
    std::string path = d->dir + "/handed-over";
    assert_int_equal(write_file_atomic(path, format_handed_over({{{"x", "main"}, A}}) + "oops\n"),
                     0);
    StateFile file(&d->loop, path);
    HandedOver out;
    std::string error;
    assert_false(file.load(out, error));
    assert_string_equal(S(error), S(path + ":3: expected \"REPO BRANCH COMMIT\" separated by "
                                           "single spaces, got 1 field(s)"));

    // A directory where the file should be: unreadable, named, not a reset.
    StateFile dir(&d->loop, d->dir);
    assert_false(dir.load(out, error));
    assert_string_equal(S(error), S(d->dir + ": " + strerror(EISDIR)));
}

void test_saves_coalesce(void **state)
{
    auto *d = static_cast<Disk *>(*state);
    StateFile file(&d->loop, d->dir + "/handed-over");
    HandedOver s = {{{"x", "main"}, A}};
    file.save(s); // starts a write
    assert_true(file.busy());
    s[WatchKey("x", "main")] = B;
    file.save(s); // queued
    s[WatchKey("x", "main")] = C;
    file.save(s); // replaces the queued content
    uv_run(&d->loop, UV_RUN_DEFAULT);
    assert_false(file.busy());
    HandedOver out;
    std::string error;
    assert_true(file.load(out, error));
    assert_string_equal(S(out[WatchKey("x", "main")]), S(C));
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_comments_blank_lines_and_last_newline),
        cmocka_unit_test(test_corrupt_lines),
        cmocka_unit_test(test_ack_order_in_order),
        cmocka_unit_test(test_ack_order_out_of_order),
        cmocka_unit_test(test_resend_after_reconnect),
        cmocka_unit_test(test_refused_commit_is_kept_and_resent_in_order),
        cmocka_unit_test_setup_teardown(test_missing_file_is_empty_state, disk_setup,
                                        disk_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_or_unreadable_file, disk_setup,
                                        disk_teardown),
        cmocka_unit_test_setup_teardown(test_saves_coalesce, disk_setup, disk_teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
