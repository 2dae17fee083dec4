// Commit intake: max_queued_per_repo, and keeping a refused repository's
// later commits from overtaking the refused one.
#include "commit_intake.hpp"

#include <kiln/log.hpp>

namespace kiln {

// max_queued_per_repo.  A refused commit is not lost: the observer keeps
// it and offers it again later (on a new connection).  The connection stays:
// the commits of other repositories behind it still go through.
bool CommitIntake::refuse(Connection &conn, const Commit &commit, const JobTable &jobs,
                          size_t max_queued)
{
    const std::string &repo = commit.spec.repo;
    auto admission = jobs.admit(commit.spec, max_queued);
    if (admission == JobTable::Admission::known)
        return false; // already queued (or done): acknowledged as before
    auto refused = refused_.find(&conn);
    bool after = refused != refused_.end() && refused->second.count(repo);
    if (admission == JobTable::Admission::admitted && !after)
        return false;
    std::string why;
    if (after) {
        // Queued now, it would run before the older refused one.
        why = "repository '" + repo + "': an earlier commit of it was refused on this " +
              "connection (max_queued_per_repo); offer them again in order";
        log_debug("peer %s: repo %s: commit %.12s refused too: an earlier one was refused",
                  conn.peer().c_str(), repo.c_str(), commit.spec.commit.c_str());
    } else {
        why = "repository '" + repo + "' has " + std::to_string(jobs.queued(repo)) +
              " jobs queued (max_queued_per_repo = " +
              std::to_string(max_queued) + "); commit refused, offer it again " +
              "later";
        log_warning("peer %s: repo %s: commit %.12s refused: %zu jobs queued "
                    "(max_queued_per_repo = %zu); it and the later commits of %s on this "
                    "connection wait with the observer",
                    conn.peer().c_str(), repo.c_str(), commit.spec.commit.c_str(),
                    jobs.queued(repo), max_queued, repo.c_str());
        refused_[&conn].insert(repo);
    }
    conn.send(Error{commit.id, why});
    return true;
}

} // namespace kiln
