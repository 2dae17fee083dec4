#pragma once
// EventHub: server-sent events to every subscriber of /api/v1/events (and
// of the pages' live updates).  Each subscriber is an HttpStream with its
// own buffer bound: one that does not read is dropped, never waited for.
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_server.hpp"

namespace kiln {

// One server-sent event: "event: EVENT\ndata: JSON\n\n", the data on one
// line, invalid UTF-8 in it (a test's output may be any bytes) replaced.
std::string sse_event(const std::string &event, const nlohmann::json &data);

class EventHub {
  public:
    // Start sending events to `stream` (an open text/event-stream).
    void subscribe(std::shared_ptr<HttpStream> stream);
    // sse_event(event, data) to every subscriber.
    void publish(const std::string &event, const nlohmann::json &data);
    // A comment line, so that a subscriber that went away is noticed (its
    // write fails) and proxies keep the stream open.
    void keepalive();
    size_t subscribers() const;

  private:
    void send_all(const std::string &frame);
    std::vector<std::shared_ptr<HttpStream>> streams_;
};

// The handler of GET /api/v1/events: a text/event-stream subscribed to `hub`.
HttpHandler event_stream_handler(EventHub &hub);

} // namespace kiln
