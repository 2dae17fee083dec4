// kilnctl gc [--dry-run]: the dispatcher runs garbage collection now (or
// plans it) and answers with what was (or would be) deleted and cut.
#include <msgpack.hpp>

#include "dispatcher.hpp"

namespace kiln {

namespace {

std::string pack_tally(const GcTally &t, bool dry)
{
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(7);
    pk.pack("dry_run"), pk.pack(dry);
    pk.pack("jobs"), pk.pack(t.jobs);
    pk.pack("shards"), pk.pack(t.shards);
    pk.pack("stored_bytes"), pk.pack(t.stored_bytes);
    pk.pack("logs_cut"), pk.pack(t.logs_cut);
    pk.pack("log_bytes_cut"), pk.pack(t.log_bytes_cut);
    pk.pack("branches");
    pk.pack_array(static_cast<uint32_t>(t.branches.size()));
    for (const auto &[name, b] : t.branches) {
        size_t space = name.find(' '); // "repo branch": a repository name has no space
        pk.pack_map(5);
        pk.pack("repo"), pk.pack(name.substr(0, space));
        pk.pack("branch"), pk.pack(space == std::string::npos ? "" : name.substr(space + 1));
        pk.pack("jobs"), pk.pack(b.jobs);
        pk.pack("logs_cut"), pk.pack(b.logs_cut);
        pk.pack("log_bytes_cut"), pk.pack(b.log_bytes_cut);
    }
    return std::string(buf.data(), buf.size());
}

} // namespace

void Dispatcher::on_gc(Connection &conn, const Query &q)
{
    if (q.arg != "" && q.arg != "dry-run") {
        refuse_query(conn, q, "gc: unknown argument '" + q.arg + "' (\"\" or \"dry-run\")");
        return;
    }
    bool dry = q.arg == "dry-run";
    std::weak_ptr<Connection> weak = conn.shared_from_this();
    uint64_t id = q.id;
    gc_.request(dry, [weak, id, dry](const GcTally &tally, const std::string &error) {
        auto peer = weak.lock();
        if (!peer)
            return; // kilnctl went away; the run is done all the same
        if (!error.empty())
            peer->send(Error{id, "gc: " + error});
        else
            peer->send(Reply{id, pack_tally(tally, dry)});
    });
}

} // namespace kiln
