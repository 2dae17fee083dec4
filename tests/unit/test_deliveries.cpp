// The delivery engine, driven through the real loader, store and the
// event_fixture plugin: events of a commit in order and one at a time, the
// in-flight limit, back-off and Retry-After, rejection, superseded results,
// a hanging receiver that costs the others nothing, restart from the outbox,
// routing (repos, wants, older plugins) and what an event carries.
#include "delivery_rig.hpp"
#include "test.hpp"

#include <algorithm>
#include <map>

using namespace kiln;

namespace {

const char kOne[] = "[[report]]\nplugin = \"event_fixture\"\n";

int setup(void **state)
{
    auto *rig = new DeliveryRig;
    *state = rig;
    return rig->dir.empty() ? -1 : 0;
}

int teardown(void **state)
{
    delete static_cast<DeliveryRig *>(*state);
    return 0;
}

DeliveryRig &rig_of(void **state) { return *static_cast<DeliveryRig *>(*state); }

// Three events for each of six commits: per commit QUEUED, STARTED,
// FINISHED in that order and never two at once; four commits in flight at
// most (the per-receiver limit), and four reached.
void test_order_per_commit_and_in_flight_limit(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(std::string(kOne) + "delay = \"30ms\"\n");
    std::vector<uint64_t> ids;
    for (char c : std::string("abcdef"))
        ids.push_back(r.add_job("example", c));
    for (uint64_t id : ids)
        r.raise(KILN_EVENT_QUEUED, id);
    for (uint64_t id : ids) {
        r.assign(id);
        r.raise(KILN_EVENT_STARTED, id);
        r.finish(id, KILN_PASSED);
        r.raise(KILN_EVENT_FINISHED, id);
    }
    event_fixture &f = r.fixture(0);
    assert_true(r.run_until([&] { return r.settled(); }));
    assert_int_equal(f.n_calls, 18);
    assert_int_equal(f.max_in_flight, 4);
    std::map<uint64_t, std::vector<int>> kinds;
    std::map<uint64_t, uint64_t> last_call; // job → when its last event was handed over
    for (size_t i = 0; i < f.n_calls; i++) {
        const event_fixture_call &c = f.calls[i];
        kinds[c.job_id].push_back(c.kind);
        // The commit's previous event had ended (30 ms each) before this one.
        if (last_call.count(c.job_id))
            assert_true(c.called_ms >= last_call[c.job_id] + 25);
        last_call[c.job_id] = c.called_ms;
    }
    for (uint64_t id : ids) {
        std::vector<int> want = {KILN_EVENT_QUEUED, KILN_EVENT_STARTED, KILN_EVENT_FINISHED};
        assert_true(kinds[id] == want);
    }
    const ReceiverStatus *s = r.status_of("event_fixture");
    assert_non_null(s);
    assert_int_equal(s->delivered, 18);
    assert_int_equal(s->pending, 0);
    r.run_until([] { return false; }, 50); // the deletes commit
    assert_true(r.store->load_deliveries().empty());
}

// A failing receiver is paused 50, 100, 200, then 400 ms (the cap), each
// attempt counting its retries; a Retry-After is honoured; a success
// delivers the row and clears the pause.
void test_backoff_and_retry_after(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(kOne, /*retry_max_ms=*/400, /*first_backoff_ms=*/50);
    event_fixture &f = r.fixture(0);
    f.mode = EVENT_FIXTURE_FAIL;
    uint64_t id = r.add_job("example", 'a');
    r.raise(KILN_EVENT_QUEUED, id);
    assert_true(r.run_until([&] { return f.n_calls == 5; }));
    const uint64_t want[] = {50, 100, 200, 400};
    for (size_t i = 1; i < 5; i++) {
        uint64_t gap = f.calls[i].called_ms - f.calls[i - 1].called_ms;
        print_message("attempt %zu after %llu ms\n", i, static_cast<unsigned long long>(gap));
        // The loop's cached clock may fire a timer a millisecond or two
        // early by the wall clock; a late one is load, not back-off, up to
        // the next doubling (which the cap at 400 ms must not reach).
        assert_true(gap + 5 >= want[i - 1]);
        assert_true(gap < std::max<uint64_t>(2 * want[i - 1] - 5, want[i - 1] + 150));
        assert_int_equal(f.calls[i].retries, i);
        assert_int_equal(f.calls[i].delivery_id, f.calls[0].delivery_id);
    }
    const ReceiverStatus *s = r.status_of("event_fixture");
    assert_int_equal(s->failed, 5);
    assert_string_equal(s->last_error.c_str(), "refused (fixture)");
    assert_true(s->next_attempt_unix_ms > 0);

    f.retry_after_ms = 700;
    assert_true(r.run_until([&] { return f.n_calls == 7; }));
    assert_true(f.calls[6].called_ms - f.calls[5].called_ms + 5 >= 700);
    f.mode = EVENT_FIXTURE_OK;
    assert_true(r.run_until([&] { return r.settled(); }));
    s = r.status_of("event_fixture");
    assert_int_equal(s->delivered, 1);
    assert_int_equal(s->next_attempt_unix_ms, 0);
    // The stored row counted its retries until it went.
    assert_true(r.run_until([&] { return r.store->backlog() == 0; }));
    assert_true(r.store->load_deliveries().empty());
}

// A refusal is final: the row is kept as rejected, never sent again, and
// the commit's next event goes out after it.
void test_rejection_is_not_retried(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(kOne);
    event_fixture &f = r.fixture(0);
    f.mode = EVENT_FIXTURE_REJECT;
    uint64_t id = r.add_job("example", 'a');
    r.raise(KILN_EVENT_QUEUED, id);
    r.assign(id);
    r.finish(id, KILN_ERROR);
    r.raise(KILN_EVENT_FINISHED, id);
    assert_true(r.run_until([&] { return r.settled(); }));
    r.run_until([] { return false; }, 300); // nothing more happens
    assert_int_equal(f.n_calls, 2);
    assert_int_equal(f.calls[0].kind, KILN_EVENT_QUEUED);
    assert_int_equal(f.calls[1].kind, KILN_EVENT_FINISHED);
    const ReceiverStatus *s = r.status_of("event_fixture");
    assert_int_equal(s->rejected, 2);
    assert_int_equal(s->refused, 2);
    assert_int_equal(s->failed, 0);
    assert_string_equal(s->last_error.c_str(), "HTTP 401: bad credentials (fixture)");
    auto rows = r.store->load_deliveries();
    assert_int_equal(rows.size(), 2);
    assert_true(rows[0].rejected && rows[1].rejected);
    // After a restart they are counted, not sent.
    r.reopen();
    r.run_until([] { return false; }, 100);
    assert_int_equal(r.fixture(0).n_calls, 0);
    assert_int_equal(r.status_of("event_fixture")->rejected, 2);
}

// A FINISHED row of an attempt the job has left behind (it ran again) is
// dropped, not sent.
void test_superseded_result_is_dropped(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(kOne);
    event_fixture &f = r.fixture(0);
    f.mode = EVENT_FIXTURE_HANG; // hold the QUEUED so the FINISHED waits behind it
    uint64_t id = r.add_job("example", 'a');
    r.raise(KILN_EVENT_QUEUED, id);
    r.assign(id);
    r.finish(id, KILN_FAILED);
    r.raise(KILN_EVENT_FINISHED, id); // attempt 1
    assert_true(r.run_until([&] { return f.n_calls == 1; }));
    assert_true(r.jobs.retry(id));
    r.assign(id); // attempt 2
    r.engine->stop(); // cancel the hanging QUEUED ...
    r.reopen();       // ... and start again from the outbox
    event_fixture &g = r.fixture(0);
    assert_true(r.run_until([&] { return r.settled(); }));
    assert_int_equal(g.n_calls, 1); // the QUEUED again; the FINISHED of attempt 1 dropped
    assert_int_equal(g.calls[0].kind, KILN_EVENT_QUEUED);
    assert_int_equal(r.status_of("event_fixture")->delivered, 1);
}

// A receiver that never answers holds its four attempts and nothing else:
// the other receiver delivers every event meanwhile.  Shutdown cancels the
// four; their rows stay in the outbox.
void test_hanging_receiver_costs_others_nothing(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(std::string(kOne) + kOne);
    event_fixture &slow = r.fixture(0), &fast = r.fixture(1);
    slow.mode = EVENT_FIXTURE_HANG;
    for (char c : std::string("abcdefghij"))
        r.raise(KILN_EVENT_QUEUED, r.add_job("example", c));
    assert_true(r.run_until([&] {
        return r.accepted == r.raised && r.status_of("event_fixture#2")->pending == 0;
    }));
    assert_int_equal(fast.n_calls, 10);
    assert_int_equal(slow.in_flight, 4);
    const ReceiverStatus *s = r.status_of("event_fixture");
    assert_int_equal(s->pending, 10);
    assert_int_equal(s->in_flight, 4);
    r.engine->stop();
    assert_true(r.run_until([&] { return slow.in_flight == 0; }));
    assert_int_equal(slow.cancelled, 4);
    r.run_until([] { return false; }, 50);
    assert_int_equal(r.store->load_deliveries().size(), 10);
}

// A restart delivers what the outbox held, each with the delivery_id it had,
// and a new event gets an id above every one used before.
void test_restart_from_the_outbox(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(kOne);
    r.fixture(0).mode = EVENT_FIXTURE_FAIL;
    std::vector<uint64_t> ids;
    for (char c : std::string("abc")) {
        uint64_t id = r.add_job("example", c);
        for (const auto &row : r.raise(KILN_EVENT_QUEUED, id))
            ids.push_back(row.id);
    }
    assert_true(r.run_until([&] { return r.fixture(0).n_calls >= 3; }));
    r.reopen();
    event_fixture &f = r.fixture(0);
    assert_true(r.run_until([&] { return r.settled(); }));
    assert_int_equal(f.n_calls, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(f.calls[i].delivery_id, ids[i]);
        assert_int_equal(f.calls[i].retries, 1); // the failure before the restart counts
    }
    assert_true(r.run_until([&] { return r.store->backlog() == 0; }));
    assert_true(r.store->load_deliveries().empty());
    r.reopen(); // an empty outbox: ids still go up
    uint64_t next = r.raise(KILN_EVENT_QUEUED, r.add_job("example", 'd')).at(0).id;
    assert_true(next > ids.back());
}

// repos and wants() decide who gets a row; an older plugin gets FINISHED
// only; identities number a plugin's tables.
void test_routing(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start("[[report]]\nplugin = \"event_fixture\"\nrepos = [\"a\"]\n"
            "[[report]]\nplugin = \"event_fixture\"\nkinds = \"finished\"\n"
            "[[report]]\nplugin = \"good\"\n");
    uint64_t in_a = r.add_job("a", '1'), in_b = r.add_job("b", '2');
    auto receivers = [&](int kind, uint64_t id) {
        std::string names;
        for (const auto &row : r.engine->raise(kind, *r.jobs.find(id), 0))
            names += (names.empty() ? "" : " ") + row.receiver;
        return names;
    };
    assert_string_equal(receivers(KILN_EVENT_QUEUED, in_a).c_str(), "event_fixture");
    assert_string_equal(receivers(KILN_EVENT_QUEUED, in_b).c_str(), "");
    assert_string_equal(receivers(KILN_EVENT_FINISHED, in_a).c_str(),
                        "event_fixture event_fixture#2 good");
    assert_string_equal(receivers(KILN_EVENT_FINISHED, in_b).c_str(), "event_fixture#2 good");
}

// What an event carries: url from base_url, the branch's previous outcome,
// counts by outcome, times, runner from STARTED on.
void test_event_fields(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(kOne, 400, 50, "https://ci.example.com");
    uint64_t first = r.add_job("example", 'a'), second = r.add_job("example", 'b');
    r.assign(first);
    r.finish(first, KILN_FAILED);
    r.raise(KILN_EVENT_STARTED, second, 1700);
    r.assign(second);
    r.finish(second, KILN_PASSED);
    r.raise(KILN_EVENT_FINISHED, second, 3000);
    event_fixture &f = r.fixture(0);
    assert_true(r.run_until([&] { return r.settled(); }));
    assert_int_equal(f.n_calls, 2);
    const event_fixture_call &started = f.calls[0], &done = f.calls[1];
    assert_int_equal(started.outcome, KILN_OUTCOME_NONE);
    assert_int_equal(started.event_unix_ms, 1700);
    assert_int_equal(started.queued_unix_ms, 1000);
    assert_string_equal(started.runner, "runner-1");
    assert_string_equal(done.url, ("https://ci.example.com/commit/" + std::string(40, 'b')).c_str());
    assert_int_equal(done.outcome, KILN_PASSED);
    assert_int_equal(done.previous_outcome, KILN_FAILED);
    assert_int_equal(done.counts[KILN_PASSED], 2);
    assert_int_equal(done.counts[KILN_FAILED], 1);
    assert_int_equal(done.attempt, 1);
    assert_true(done.delivery_id > started.delivery_id);
}

// 1,000 commits' results to a receiver that answers on the next loop turn:
// all delivered, each once, and how fast (printed; the store deletes each
// delivered row in the same batches).
void test_a_thousand_results(void **state)
{
    DeliveryRig &r = rig_of(state);
    r.start(std::string(kOne) + "kinds = \"finished\"\n");
    std::vector<uint64_t> ids;
    for (int i = 0; i < 1000; i++) {
        JobSpec spec;
        spec.repo = "example";
        spec.url = "/srv/git/example";
        spec.branch = "main";
        char commit[41];
        snprintf(commit, sizeof commit, "%040d", i);
        spec.commit = commit;
        ids.push_back(r.jobs.add(spec, 1000).first->id);
    }
    uint64_t start = uv_hrtime();
    for (uint64_t id : ids) {
        r.assign(id);
        r.finish(id, KILN_PASSED);
        r.raise(KILN_EVENT_FINISHED, id);
    }
    assert_true(r.run_until([&] { return r.settled(); }, 20000));
    double seconds = double(uv_hrtime() - start) / 1e9;
    event_fixture &f = r.fixture(0);
    assert_int_equal(f.n_calls, 1000);
    assert_int_equal(r.status_of("event_fixture")->delivered, 1000);
    std::printf("1000 results delivered in %.3f s: %.0f deliveries/s (4 in flight at most)\n",
                seconds, 1000 / seconds);
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_per_commit_and_in_flight_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff_and_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejection_is_not_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superseded_result_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hanging_receiver_costs_others_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_from_the_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_thousand_results, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
