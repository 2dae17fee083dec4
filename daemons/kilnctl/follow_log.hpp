#pragma once
// kilnctl log [-f] COMMIT: a commit's log, and with -f the output of its
// running tests as it arrives, until its result.
#include <cstdint>
#include <string>

namespace kiln {

struct LogRequest {
    std::string address, secret, commit;
    bool follow = false;
    uint64_t timeout_ms = 10000; // without any answer
};

// Writes the log to stdout; the exit status (0 printed; 1 refused or unreachable).
int print_log(const LogRequest &req);

} // namespace kiln
