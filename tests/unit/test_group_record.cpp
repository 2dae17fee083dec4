// The record of test process groups (group_record.hpp): the file format,
// /proc/PID/stat parsing, which processes count as a recorded group's
// leftovers, and, with real processes started the way the runner starts
// tests (spawn_process: a session of their own), that kill_leftovers kills
// a recorded group and its children, and nothing when the record names
// another process (a reused pid) or another boot; with the leader gone,
// only what runs as the recorded user.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <kiln/atomic_file.hpp>
#include <kiln/spawn.hpp>

#include "group_record.hpp"
#include "test.hpp"

using namespace kiln;

namespace {

struct State {
    TempDir tmp{"kiln-test-groups"};
    uv_loop_t loop;
    kiln_process *proc = nullptr;
    pid_t pid = 0;
    int ended = 0; // spawn callbacks run
};

int setup(void **state)
{
    auto *s = new State;
    if (s->tmp.path().empty())
        return -1;
    uv_loop_init(&s->loop);
    *state = s;
    return 0;
}

int teardown(void **state)
{
    auto *s = static_cast<State *>(*state);
    if (s->pid > 0 && s->ended == 0)
        ::kill(-s->pid, SIGKILL); // a failed test's group: ours, still our child
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    delete s;
    return rc == 0 ? 0 : -1;
}

// Alive: in /proc and not a zombie.
bool alive(pid_t pid)
{
    for (const ProcInfo &p : list_processes())
        if (p.pid == pid)
            return !p.ended;
    return false;
}

std::vector<pid_t> group_members(pid_t pgid)
{
    std::vector<pid_t> out;
    for (const ProcInfo &p : list_processes())
        if (p.pgid == pgid && !p.ended)
            out.push_back(p.pid);
    return out;
}

// Start a test-like process group: sh, with a sleeping child in the
// background, itself sleeping.  Waits until both run.
void start_group(State *s)
{
    const char *argv[] = {"/bin/sh", "-c", "sleep 60 & sleep 61", nullptr};
    kiln_spawn_request req{};
    req.argv = argv;
    auto on_exit = [](void *arg, int, const kiln_spawn_result *) {
        static_cast<State *>(arg)->ended++;
    };
    assert_int_equal(spawn_process(&s->loop, &req, on_exit, s, &s->proc), 0);
    s->pid = process_pid(s->proc);
    assert_true(s->pid > 0);
    for (int i = 0; i < 500 && group_members(s->pid).size() < 3; i++)
        usleep(10 * 1000);
    assert_int_equal(group_members(s->pid).size(), 3);
}

// The record's files, but temporaries.
std::vector<std::string> records(const std::string &dir)
{
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto &e : std::filesystem::directory_iterator(dir, ec)) {
        std::string name = e.path().filename();
        if (name.find(".tmp") == std::string::npos)
            out.push_back(name);
    }
    return out;
}

// ---- pure parts ----

void test_entry_round_trip(void **)
{
    GroupEntry e{4242, 987654321, 1001, "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"};
    std::string text = format_group_entry(e);
    GroupEntry back;
    assert_true(parse_group_entry(text, back));
    assert_int_equal(back.pgid, 4242);
    assert_int_equal(back.start, 987654321);
    assert_int_equal(back.uid, 1001);
    assert_string_equal(S(back.boot), S(e.boot));
    for (const char *bad : {"", "kiln-runner test group 12 start 5 uid 0\n",
                            "kiln-runner test group 1 start 5 uid 0 boot b\n",   // init: never
                            "kiln-runner test group 0 start 5 uid 0 boot b\n",
                            "kiln-runner test group x start 5 uid 0 boot b\n",
                            "kiln-runner test group 12 start 5 uid 0 boot b extra\n",
                            "kiln-runner test grp 12 start 5 uid 0 boot b\n",
                            "kiln-runner test group 12 start 5 uid 99999999999 boot b\n"}) {
        GroupEntry x;
        if (parse_group_entry(bad, x))
            fail_msg("accepted: %s", bad);
    }
}

void test_proc_stat(void **)
{
    // A command name with spaces and parentheses of its own.
    std::string text = "4242 (a) b (c) d) S 1 4240 4239 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
                       "123456 1000 100\n";
    ProcInfo p;
    assert_true(parse_proc_stat(text, p));
    assert_int_equal(p.pid, 4242);
    assert_int_equal(p.pgid, 4240);
    assert_int_equal(p.sid, 4239);
    assert_int_equal(p.start, 123456);
    assert_false(p.ended);
    assert_true(parse_proc_stat("7 (zz) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0\n", p));
    assert_true(p.ended);
    assert_false(parse_proc_stat("", p));
    assert_false(parse_proc_stat("7 (zz) S 1 7", p));
    // Our own process, from the real /proc.
    std::string self;
    assert_int_equal(read_whole_file("/proc/self/stat", self), 0);
    assert_true(parse_proc_stat(self, p));
    assert_int_equal(p.pgid, getpgrp());
    assert_int_equal(p.sid, getsid(0));
}

void test_which_processes_are_leftovers(void **)
{
    GroupEntry g{500, 1000, 1001, "b"};
    ProcInfo leader{500, 500, 500, 1000, 1001, false};
    ProcInfo child{501, 500, 500, 1200, 1001, false};
    ProcInfo moved{502, 777, 500, 1300, 1001, false}; // another group, same session
    ProcInfo other_user{503, 500, 500, 1300, 0, false};
    ProcInfo older{504, 500, 500, 900, 1001, false};
    ProcInfo stranger{600, 600, 600, 1500, 1001, false};
    assert_true(leader_state(g, {leader, child}) == Leader::ours);
    assert_true(leader_state(g, {child}) == Leader::gone);
    ProcInfo reused = leader;
    reused.start = 5000;
    assert_true(leader_state(g, {reused, child}) == Leader::reused);

    assert_true(is_leftover(g, leader, Leader::ours));
    assert_true(is_leftover(g, child, Leader::ours));
    assert_true(is_leftover(g, moved, Leader::ours));
    assert_true(is_leftover(g, other_user, Leader::ours)); // a setuid program the test ran
    assert_false(is_leftover(g, older, Leader::ours));
    assert_false(is_leftover(g, stranger, Leader::ours));
    // Leader gone: only the tests' user's.
    assert_true(is_leftover(g, child, Leader::gone));
    assert_false(is_leftover(g, other_user, Leader::gone));
    // The pid was reused: nothing.
    assert_false(is_leftover(g, child, Leader::reused));
    ProcInfo zombie = child;
    zombie.ended = true;
    assert_false(is_leftover(g, zombie, Leader::ours));
}

// ---- real processes ----

// Recorded while it runs; a runner started afterwards kills the group, the
// shell and both sleepers, and removes the record.
void test_kills_recorded_group(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string dir = s->tmp / "groups";
    GroupRecord record(&s->loop, dir);
    start_group(s);
    std::vector<pid_t> members = group_members(s->pid);
    record.add(s->pid, getuid());
    uv_run(&s->loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 500 && records(dir).empty(); i++) {
        usleep(2000);
        uv_run(&s->loop, UV_RUN_NOWAIT);
    }
    assert_int_equal(records(dir).size(), 1);

    GroupRecord restarted(&s->loop, dir); // as after a crash: a new runner, the same dir
    assert_int_equal(restarted.kill_leftovers(), 3);
    for (pid_t pid : members)
        assert_false(alive(pid));
    assert_int_equal(records(dir).size(), 0);
    uv_run(&s->loop, UV_RUN_DEFAULT); // the spawn callback: killed
    assert_int_equal(s->ended, 1);
}

// A record whose leader is another process now (the start time differs: the
// pid was reused), or of an earlier boot: nothing is killed, the record goes.
void test_never_kills_a_reused_pid(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string dir = s->tmp / "groups";
    start_group(s);
    ProcInfo leader;
    for (const ProcInfo &p : list_processes())
        if (p.pid == s->pid)
            leader = p;
    GroupEntry reused{s->pid, leader.start + 1, getuid(), current_boot_id()};
    GroupEntry old_boot{s->pid, leader.start, getuid(), "another-boot"};
    assert_int_equal(write_file_atomic(dir + "/group-1", format_group_entry(reused)), 0);
    assert_int_equal(write_file_atomic(dir + "/group-2", format_group_entry(old_boot)), 0);
    assert_int_equal(write_file_atomic(dir + "/group-3", "torn"), 0);
    assert_int_equal(write_file_atomic(dir + "/group-4.tmp-AbCdEf", "torn"), 0);
    GroupRecord record(&s->loop, dir);
    assert_int_equal(record.kill_leftovers(), 0);
    assert_int_equal(group_members(s->pid).size(), 3);
    assert_int_equal(records(dir).size(), 0);
    kill_process(s->proc);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_int_equal(s->ended, 1);
}

// A group whose leader has exited and whose child lives on (the leader was
// not a test the runner waited for): the child is killed when the record
// names the tests' user, and left alone when it names another.
void test_leader_gone(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string dir = s->tmp / "groups";
    for (uid_t recorded : {getuid() + 1, getuid()}) {
        int sync[2];
        assert_int_equal(pipe(sync), 0);
        pid_t leader = fork();
        assert_true(leader >= 0);
        if (leader == 0) { // a session of its own, a sleeping child, then gone
            setsid();
            if (fork() == 0) {
                execlp("sleep", "sleep", "60", static_cast<char *>(nullptr));
                _exit(127);
            }
            char c;
            close(sync[1]);
            _exit(read(sync[0], &c, 1) == 1 ? 0 : 1);
        }
        close(sync[0]);
        std::vector<pid_t> members;
        for (int i = 0; i < 500 && members.size() < 2; i++) {
            usleep(10 * 1000);
            members = group_members(leader);
        }
        assert_int_equal(members.size(), 2);
        ProcInfo info;
        for (const ProcInfo &p : list_processes())
            if (p.pid == leader)
                info = p;
        assert_int_equal(write(sync[1], "x", 1), 1);
        close(sync[1]);
        int status;
        assert_int_equal(waitpid(leader, &status, 0), leader);
        members = group_members(leader);
        assert_int_equal(members.size(), 1); // the sleeper, its leader gone
        GroupEntry e{leader, info.start, recorded, current_boot_id()};
        assert_int_equal(write_file_atomic(dir + "/group-x", format_group_entry(e)), 0);
        GroupRecord record(&s->loop, dir);
        if (recorded != getuid()) {
            assert_int_equal(record.kill_leftovers(), 0);
            assert_true(alive(members[0]));
            ::kill(members[0], SIGKILL); // ours, by the pid just seen
        } else {
            assert_int_equal(record.kill_leftovers(), 1);
            assert_false(alive(members[0]));
        }
        assert_int_equal(records(dir).size(), 0);
    }
}

// A process that ends before its record is written: the record is removed
// once written, never left behind.
void test_end_during_write_leaves_no_record(void **state)
{
    auto *s = static_cast<State *>(*state);
    std::string dir = s->tmp / "groups";
    GroupRecord record(&s->loop, dir);
    start_group(s);
    record.add(s->pid, getuid());
    record.remove(s->pid); // before the loop ran the write's completion
    kill_process(s->proc);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_int_equal(s->ended, 1);
    assert_int_equal(records(dir).size(), 0);
}

} // namespace

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_round_trip),
        cmocka_unit_test(test_proc_stat),
        cmocka_unit_test(test_which_processes_are_leftovers),
        cmocka_unit_test_setup_teardown(test_kills_recorded_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_kills_a_reused_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_end_during_write_leaves_no_record, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
