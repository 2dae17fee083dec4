// kiln-observer's state file: format, parse, load, coalesced saves.
#include "observer_state.hpp"

#include <cerrno>
#include <cstring>
#include <vector>

#include <kiln/atomic_file.hpp>
#include <kiln/log.hpp>
#include <kiln/messages.hpp>

namespace kiln {

namespace {

const char kHeader[] = "# kiln-observer: last commit acknowledged per repo and branch\n";

std::vector<std::string> split_fields(const std::string &line)
{
    std::vector<std::string> fields;
    size_t at = 0;
    while (at < line.size()) {
        size_t end = line.find(' ', at);
        if (end == std::string::npos)
            end = line.size();
        fields.push_back(line.substr(at, end - at));
        at = end + 1;
    }
    if (!line.empty() && line.back() == ' ')
        fields.push_back(""); // a trailing space is an empty last field, not nothing
    return fields;
}

} // namespace

std::string format_handed_over(const HandedOver &state)
{
    std::string out = kHeader;
    for (const auto &[key, commit] : state)
        out += key.first + " " + key.second + " " + commit + "\n";
    return out;
}

bool parse_handed_over(const std::string &text, const std::string &file, HandedOver &out,
                       std::string &error)
{
    HandedOver state;
    size_t at = 0;
    for (unsigned lineno = 1; at < text.size(); lineno++) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos)
            end = text.size();
        std::string line = text.substr(at, end - at);
        at = end + 1;
        if (line.empty() || line[0] == '#')
            continue;
        auto bad = [&](const std::string &why) {
            error = file + ":" + std::to_string(lineno) + ": " + why;
            return false;
        };
        std::vector<std::string> f = split_fields(line);
        if (f.size() != 3)
            return bad("expected \"REPO BRANCH COMMIT\" separated by single spaces, got " +
                       std::to_string(f.size()) + " field(s)");
        if (!valid_name(f[0]))
            return bad("'" + f[0] + "' is not a valid repository name");
        if (!valid_branch(f[1]))
            return bad("'" + f[1] + "' is not a valid branch name");
        if (!valid_commit_id(f[2]))
            return bad("'" + f[2] + "' is not a commit id (40 or 64 lowercase hex digits)");
        if (!state.emplace(WatchKey{f[0], f[1]}, f[2]).second)
            return bad("repo " + f[0] + " branch " + f[1] + " is listed twice");
    }
    out = std::move(state);
    return true;
}

StateFile::StateFile(uv_loop_t *loop, std::string path)
    : path_(std::move(path)), writer_(std::make_shared<Writer>())
{
    writer_->loop = loop;
    writer_->path = path_;
}

bool StateFile::load(HandedOver &out, std::string &error) const
{
    std::string text;
    int rc = read_whole_file(path_, text);
    if (rc == -ENOENT) {
        out.clear();
        return true;
    }
    if (rc < 0) {
        error = path_ + ": " + strerror(-rc);
        return false;
    }
    if (text.find('\0') != std::string::npos) {
        error = path_ + ": contains NUL bytes (not a kiln-observer state file?)";
        return false;
    }
    return parse_handed_over(text, path_, out, error);
}

int StateFile::write_now(const HandedOver &state) const
{
    return write_file_atomic(path_, format_handed_over(state));
}

void StateFile::save(const HandedOver &state)
{
    std::string content = format_handed_over(state);
    if (writer_->in_flight) {
        writer_->queued = true;
        writer_->next = std::move(content);
        return;
    }
    start_write(writer_, std::move(content));
}

void StateFile::start_write(const std::shared_ptr<Writer> &w, std::string content)
{
    w->in_flight = true;
    write_file_atomic_async(w->loop, w->path, std::move(content), [w](int status) noexcept {
        w->in_flight = false;
        try {
            if (status < 0) {
                // Not fatal: the dispatcher deduplicates, so a stale file only
                // means commits are sent again after a restart.
                if (!w->failing)
                    log_err("state %s: write: %s; commits acknowledged since may be sent again "
                            "after a restart",
                            w->path.c_str(), uv_strerror(status));
                w->failing = true;
            } else if (w->failing) {
                log_notice("state %s: written again", w->path.c_str());
                w->failing = false;
            }
            if (w->queued) {
                w->queued = false;
                start_write(w, std::move(w->next));
            }
        } catch (const std::exception &e) {
            log_err("state %s: write: %s", w->path.c_str(), e.what());
        }
    });
}

} // namespace kiln
