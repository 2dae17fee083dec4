// H2oStream: a chunked response written over time (see http_stream.hpp).
#include "http_stream.hpp"

#include <sys/socket.h>

#include <kiln/log.hpp>

#include "http_reason.hpp"

namespace kiln {

std::shared_ptr<H2oStream> H2oStream::start(HttpServer::Impl &server, h2o_req_t *req, int status,
                                            const std::string &content_type)
{
    auto stream = std::make_shared<H2oStream>();
    stream->server_ = &server;
    stream->req_ = req;
    auto *gen = static_cast<Generator *>(h2o_mem_alloc_pool(&req->pool, sizeof(Generator)));
    gen->super.proceed = on_proceed;
    gen->super.stop = on_stop;
    gen->stream = stream.get();
    req->res.status = status;
    req->res.reason = http_reason(status);
    h2o_iovec_t type = h2o_strdup(&req->pool, content_type.data(), content_type.size());
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, type.base,
                   type.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, nullptr,
                   H2O_STRLIT("no-cache"));
    h2o_start_response(req, &gen->super);
    server.streams.insert(stream);
    // The headers go out now, with no body yet: a client sees the stream open.
    stream->sending_ = true;
    h2o_send(req, nullptr, 0, H2O_SEND_STATE_IN_PROGRESS);
    return stream;
}

bool H2oStream::write(std::string chunk)
{
    if (closed_)
        return false;
    if (chunk.empty())
        return true;
    if (pending_.size() + chunk.size() > server_->config.max_stream_buffer) {
        log_info("http: stream to a client that reads too slowly: %zu bytes waiting "
                 "(max_stream_buffer = %zu): dropped",
                 pending_.size() + chunk.size(), server_->config.max_stream_buffer);
        cut();
        return false;
    }
    pending_ += chunk;
    if (!sending_)
        flush();
    return true;
}

void H2oStream::close()
{
    if (closed_)
        return;
    final_queued_ = true;
    mark_closed();
    if (!sending_ && req_)
        flush();
}

void H2oStream::flush()
{
    if (!req_)
        return;
    auto keep = shared_from_this(); // h2o_send may end the request (and us with it)
    in_flight_ = std::move(pending_);
    pending_.clear();
    h2o_iovec_t buf = h2o_iovec_init(in_flight_.data(), in_flight_.size());
    sending_ = true;
    if (final_queued_) {
        h2o_req_t *req = req_;
        finished(); // H2O drops the generator with the final send: no proceed, no stop
        h2o_send(req, &buf, buf.len ? 1 : 0, H2O_SEND_STATE_FINAL);
    } else {
        h2o_send(req_, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
    }
}

void H2oStream::on_proceed(h2o_generator_t *gen, h2o_req_t *req) noexcept
{
    H2oStream *self = reinterpret_cast<Generator *>(gen)->stream;
    self->sending_ = false;
    self->in_flight_.clear();
    if (self->cut_ && self->req_) {
        // Cut while that write was in the kernel's buffers: end it now.
        auto keep = self->shared_from_this();
        self->finished();
        h2o_send(req, nullptr, 0, H2O_SEND_STATE_ERROR);
    } else if (!self->pending_.empty() || self->final_queued_) {
        self->flush();
    }
}

// The connection is going away (client gone, write failed, cut()).
void H2oStream::on_stop(h2o_generator_t *gen, h2o_req_t *) noexcept
{
    H2oStream *self = reinterpret_cast<Generator *>(gen)->stream;
    auto keep = self->shared_from_this();
    self->finished();
    self->mark_closed();
}

void H2oStream::mark_closed()
{
    if (closed_)
        return;
    closed_ = true;
    if (on_close) {
        auto callback = std::move(on_close);
        on_close = nullptr;
        guarded("http: stream closed", callback);
    }
}

// Too far behind: shut the socket down, so the write in flight fails and
// H2O closes the connection (which calls on_stop).
void H2oStream::cut()
{
    pending_.clear();
    cut_ = true;
    if (req_ && !sending_) {
        h2o_req_t *req = req_;
        finished();
        h2o_send(req, nullptr, 0, H2O_SEND_STATE_ERROR);
    } else if (req_) {
        h2o_socket_t *sock = req_->conn->callbacks->get_socket(req_->conn);
        int fd = sock ? h2o_socket_get_fd(sock) : -1;
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
    }
    mark_closed();
}

void H2oStream::finished()
{
    req_ = nullptr;
    auto keep = shared_from_this();
    server_->streams.erase(keep);
}

} // namespace kiln
