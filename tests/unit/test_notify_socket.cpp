// The notify protocol without blocking (systemd.cpp), against a datagram
// socket this test owns under an abstract name ("@..."), as systemd may
// pass it: once nobody reads, sending still returns at once, STATUS= lines
// are dropped, and READY/WATCHDOG/STOPPING wait until notify_retry() gets
// them through.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <kiln/systemd.hpp>

#include "test.hpp"

using namespace kiln;

namespace {

int g_fd = -1;

// Everything queued on the socket now, one string per datagram.
std::vector<std::string> drain()
{
    std::vector<std::string> out;
    char buf[4096];
    ssize_t n;
    while ((n = recv(g_fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0)
        out.emplace_back(buf, static_cast<size_t>(n));
    return out;
}

int setup(void **)
{
    alarm(20); // a send that blocks would hang: fail instead
    g_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    std::string name = "kiln-test-notify-" + std::to_string(getpid());
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path + 1, name.data(), name.size()); // sun_path[0] = 0: abstract
    socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    if (g_fd < 0 || bind(g_fd, reinterpret_cast<sockaddr *>(&sa), len) != 0)
        return -1;
    int small = 1024;
    setsockopt(g_fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setenv("NOTIFY_SOCKET", ("@" + name).c_str(), 1);
    return 0;
}

int teardown(void **)
{
    close(g_fd);
    return 0;
}

void test_stalled_manager_never_blocks(void **)
{
    notify_ready("starting");
    std::vector<std::string> got = drain();
    assert_int_equal(got.size(), 1);
    assert_string_equal(got[0].c_str(), "READY=1\nSTATUS=starting");
    assert_false(notify_pending());

    // Nobody reads: far more than the queue holds, and every call returns.
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 2000; i++)
        notify_status("busy " + std::to_string(i));
    notify_watchdog();
    notify_watchdog();
    notify_stopping();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    assert_true(seconds < 2.0);
    assert_true(notify_pending()); // the queue is full: they wait
    notify_retry();
    assert_true(notify_pending());

    // The manager reads again: what was queued, then the kept ones, once.
    got = drain();
    assert_true(got.size() >= 1 && got.size() < 2000); // most STATUS= lines dropped
    notify_retry();
    assert_false(notify_pending());
    got = drain();
    assert_int_equal(got.size(), 1);
    assert_string_equal(got[0].c_str(), "WATCHDOG=1\nSTOPPING=1");
}

} // namespace

int main()
{
    const CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stalled_manager_never_blocks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
