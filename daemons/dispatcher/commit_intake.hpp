#pragma once
// Commit intake: whether an observer's commit may be queued.  Owns, per
// observer connection, the repositories one of whose commits was refused
// (max_queued_per_repo): their later commits on that connection are refused
// too, so none is queued ahead of an older refused one.
#include <map>
#include <set>
#include <string>

#include <kiln/net.hpp>

#include "job_table.hpp"

namespace kiln {

class CommitIntake {
  public:
    // Answer a commit that may not be queued with an error frame (the
    // connection stays) and return true; false when it may be queued (or
    // is known already).
    bool refuse(Connection &conn, const Commit &commit, const JobTable &jobs, size_t max_queued);
    void forget(const Connection &conn) { refused_.erase(&conn); }

  private:
    std::map<const Connection *, std::set<std::string>> refused_;
};

} // namespace kiln
