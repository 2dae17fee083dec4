#pragma once
// H2oStream: an HttpStream over one H2O request.  H2O takes one buffer at a
// time and says when it is sent (proceed); what the writer adds meanwhile
// waits in `pending_`, up to the server's max_stream_buffer.  A client that
// lets more pile up is cut: its socket is shut down, so the write in flight
// fails and H2O closes the connection.
#include "http_impl.hpp"

namespace kiln {

class H2oStream : public HttpStream, public std::enable_shared_from_this<H2oStream> {
  public:
    // Send the status and headers (chunked body follows); registered with
    // the server until it ends, so stop() can end it.
    static std::shared_ptr<H2oStream> start(HttpServer::Impl &server, h2o_req_t *req, int status,
                                            const std::string &content_type);
    bool write(std::string chunk) override;
    void close() override;
    bool closed() const override { return closed_; }

  private:
    struct Generator {
        h2o_generator_t super; // first: H2O hands us &super
        H2oStream *stream;
    };
    static void on_proceed(h2o_generator_t *gen, h2o_req_t *req) noexcept;
    static void on_stop(h2o_generator_t *gen, h2o_req_t *req) noexcept;
    void flush();
    void mark_closed();
    void cut();
    void finished();

    HttpServer::Impl *server_ = nullptr;
    h2o_req_t *req_ = nullptr; // null once H2O is done with the request
    std::string pending_, in_flight_;
    bool sending_ = false, closed_ = false, final_queued_ = false, cut_ = false;
};

} // namespace kiln
