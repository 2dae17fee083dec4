#pragma once
// The one header every unit test includes: cmocka (whose Debian 1.1.5 header
// lacks extern "C"), plus small helpers: a temp dir, read_file(), and run()
// for the programs a test needs (git, python3), by argv like the daemons'.  A failing cmocka assert longjmps past
// C++ destructors, so tests that own resources build them in setup and free
// them in teardown.
#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
// Before cmocka.h, whose fail() macro breaks the iostreams' fail().
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
extern "C" {
#include <cmocka.h>
}

// Text of a std::string-like for assert_string_equal.
#define S(x) (std::string(x).c_str())

// A fresh directory /tmp/PREFIX-XXXXXX, removed with all it holds when the
// object goes (std::filesystem, no shell).  A failing assert skips
// destructors: keep one in the state that teardown deletes.
class TempDir {
  public:
    explicit TempDir(const std::string &prefix = "kiln-test")
    {
        std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
        if (mkdtemp(tmpl.data()))
            path_ = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec; // best effort: a test's leftovers must not fail the next one
        if (!path_.empty())
            std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    // "" when mkdtemp failed (check it in setup).
    const std::string &path() const { return path_; }
    std::string operator/(const std::string &rel) const { return path_ + "/" + rel; }

  private:
    std::string path_;
};

// The whole of a file ("" when it cannot be read: the test's comparison fails).
inline std::string read_file(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Run the program argv[0] (looked up in PATH) with arguments argv[1..],
// through posix_spawnp: no shell, so no quoting.  `env` holds "NAME=value"
// strings set for the child on top of this process's environment.  The
// child's stderr is the test's (git's complaint shows in the test log); its
// stdout is returned without trailing newlines.  The test fails when the
// program cannot be started or does not exit with status 0.
inline std::string run(const std::vector<std::string> &argv,
                       const std::vector<std::string> &env = {})
{
    assert_false(argv.empty());
    std::vector<char *> c_argv, c_env;
    std::string shown; // argv, for a failure message
    for (const std::string &a : argv) {
        c_argv.push_back(const_cast<char *>(a.c_str()));
        shown += (shown.empty() ? "" : " ") + a;
    }
    c_argv.push_back(nullptr);
    for (const std::string &e : env)
        c_env.push_back(const_cast<char *>(e.c_str()));
    for (char **e = environ; *e; ++e) { // ours, unless env sets the same name
        const std::string_view name(*e, std::strcspn(*e, "="));
        bool overridden = false;
        for (const std::string &mine : env)
            overridden |= mine.compare(0, name.size() + 1, std::string(name) + "=") == 0;
        if (!overridden)
            c_env.push_back(*e);
    }
    c_env.push_back(nullptr);

    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0); // only the child's stdout keeps one end
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, c_argv[0], &actions, nullptr, c_argv.data(), c_env.data());
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    std::string text;
    char buf[4096];
    ssize_t n;
    while (rc == 0 && (n = read(out[0], buf, sizeof buf)) != 0) {
        if (n > 0)
            text.append(buf, static_cast<size_t>(n));
        else if (errno != EINTR)
            break;
    }
    close(out[0]);
    if (rc != 0)
        fail_msg("%s: cannot start: %s", shown.c_str(), strerror(rc));
    int status = 0;
    pid_t waited;
    while ((waited = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    assert_int_equal(waited, pid);
    if (WIFSIGNALED(status))
        fail_msg("%s: killed by signal %d", shown.c_str(), WTERMSIG(status));
    if (WEXITSTATUS(status) != 0)
        fail_msg("%s: exit status %d", shown.c_str(), WEXITSTATUS(status));
    while (!text.empty() && text.back() == '\n')
        text.pop_back();
    return text;
}
