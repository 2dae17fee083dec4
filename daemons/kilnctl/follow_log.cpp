// kilnctl log [-f]: repeated "log" queries, each asking from the offset the
// last one ended at, on one connection.  Polling rather than a stream the
// dispatcher pushes: the dispatcher keeps nothing per follower (no
// subscription to clean up, no buffer a slow terminal could grow), a
// dispatcher restart costs the follower nothing but a reconnect, and the
// offsets make every byte print once.  Every kPauseMs: with the runner's
// 100 ms coalescing, a line shows within about 150 ms.
#include "follow_log.hpp"

#include <cstdio>

#include <nlohmann/json.hpp>

#include <kiln/messages.hpp>

#include "session.hpp"

namespace kiln {

namespace {
constexpr uint64_t kPauseMs = 50;
}

int print_log(const LogRequest &req)
{
    uint64_t offset = 0;
    uint32_t attempt = 0;
    auto ask = [&] { return Query{2, "log", req.commit + "@" + std::to_string(offset)}; };
    auto next = [&](const std::string &body, Message &request, int &status) {
        nlohmann::json a;
        try {
            a = nlohmann::json::from_msgpack(body);
            uint32_t now = a.at("attempt").get<uint32_t>();
            if (attempt && now != attempt && offset > 0) {
                // Requeued: the new attempt's log starts from its beginning.
                fprintf(stderr, "kilnctl: attempt %u of job %llu started; its log follows\n", now,
                        a.at("job_id").get<unsigned long long>());
                offset = 0;
                attempt = now;
                request = ask();
                return true;
            }
            attempt = now;
            const uint64_t from = a.at("offset").get<uint64_t>();
            if (from > offset)
                fprintf(stderr, "kilnctl: %llu bytes of the log are no longer held\n",
                        static_cast<unsigned long long>(from - offset));
            const std::string &text = a.at("text").get_ref<const std::string &>();
            fwrite(text.data(), 1, text.size(), stdout);
            fflush(stdout);
            offset = a.at("end").get<uint64_t>();
            const bool more = a.at("more").get<bool>();
            if (!more && (a.at("done").get<bool>() || !req.follow)) {
                status = 0;
                return false;
            }
        } catch (const nlohmann::json::exception &e) {
            fprintf(stderr, "kilnctl: unreadable reply: %s\n", e.what());
            status = 1;
            return false;
        }
        request = ask();
        return true;
    };
    return poll_dispatcher(req.address, req.secret, ask(), req.timeout_ms, kPauseMs, next);
}

} // namespace kiln
