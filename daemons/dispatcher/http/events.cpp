// EventHub: server-sent events to the subscribers (see events.hpp).
#include "events.hpp"

#include <algorithm>

namespace kiln {

void EventHub::subscribe(std::shared_ptr<HttpStream> stream)
{
    // retry: how long a browser's EventSource waits before reconnecting.
    if (stream->write(": kiln events\nretry: 2000\n\n"))
        streams_.push_back(std::move(stream));
}

std::string sse_event(const std::string &event, const nlohmann::json &data)
{
    return "event: " + event + "\ndata: " +
           data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
}

void EventHub::publish(const std::string &event, const nlohmann::json &data)
{
    send_all(sse_event(event, data));
}

void EventHub::keepalive() { send_all(":\n\n"); }

void EventHub::send_all(const std::string &frame)
{
    // A write that fails closes that stream (too far behind, or gone).
    for (const auto &stream : streams_)
        if (!stream->closed())
            stream->write(frame);
    streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                  [](const auto &s) { return s->closed(); }),
                   streams_.end());
}

size_t EventHub::subscribers() const
{
    return std::count_if(streams_.begin(), streams_.end(),
                         [](const auto &s) { return !s->closed(); });
}

HttpHandler event_stream_handler(EventHub &hub)
{
    return [&hub](const HttpRequest &, HttpResponder &responder) {
        hub.subscribe(responder.stream(200, "text/event-stream"));
    };
}

} // namespace kiln
