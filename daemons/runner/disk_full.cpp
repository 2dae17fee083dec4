#include "disk_full.hpp"

#include <cerrno>
#include <cstring>

namespace kiln {

bool mark_disk_full(Result &r, const std::string &runner, const std::string &work_dir)
{
    if (r.outcome == KILN_PASSED || r.outcome == KILN_CANCELLED)
        return false;
    const std::string full = strerror(ENOSPC); // "No space left on device"
    bool hit = r.error.find(full) != std::string::npos || r.log.find(full) != std::string::npos;
    for (size_t i = 0; !hit && i < r.tests.size(); i++)
        hit = r.tests[i].message.find(full) != std::string::npos;
    if (!hit)
        return false;
    std::string why = "runner " + runner + ": no space left in work_dir " + work_dir +
                      " (the file system filled up during the job)";
    r.error = r.error.empty() ? why : why + "; " + r.error;
    r.outcome = KILN_ERROR;
    return true;
}

} // namespace kiln
