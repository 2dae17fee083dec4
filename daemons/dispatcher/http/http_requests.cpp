// HttpServer's requests: bounds, authentication, routing, answers.
#include "http_impl.hpp"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include <kiln/log.hpp>

#include "http_reason.hpp"
#include "http_stream.hpp"

namespace kiln {

namespace {

std::string text(h2o_iovec_t v) { return std::string(v.base ? v.base : "", v.len); }

std::string peer_of(h2o_req_t *req)
{
    sockaddr_storage ss{};
    socklen_t len = req->conn->callbacks->get_peername(req->conn, reinterpret_cast<sockaddr *>(&ss));
    char ip[INET6_ADDRSTRLEN] = "?";
    if (len && ss.ss_family == AF_INET) {
        auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
        uv_ip4_name(sin, ip, sizeof ip);
        return std::string(ip) + ":" + std::to_string(ntohs(sin->sin_port));
    }
    if (len && ss.ss_family == AF_INET6) {
        auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
        uv_ip6_name(sin6, ip, sizeof ip);
        return "[" + std::string(ip) + "]:" + std::to_string(ntohs(sin6->sin6_port));
    }
    return "?";
}

h2o_iovec_t pooled(h2o_req_t *req, const std::string &s)
{
    return h2o_strdup(&req->pool, s.data(), s.size());
}

// One answer, with its body in the request's pool (H2O sends it, and
// suppresses it for HEAD).
void answer(h2o_req_t *req, int status, const std::string &content_type, const std::string &body,
            const std::vector<std::pair<std::string, std::string>> &headers)
{
    req->res.status = status;
    req->res.reason = http_reason(status);
    h2o_iovec_t type = pooled(req, content_type);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, type.base,
                   type.len);
    for (const auto &[name, value] : headers) {
        std::string lower = name;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return std::tolower(c); });
        h2o_iovec_t n = pooled(req, lower), v = pooled(req, value);
        h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, nullptr, v.base,
                              v.len);
    }
    req->res.content_length = body.size();
    h2o_send_inline(req, body.data(), body.size());
}

// Errors are JSON under /api/ (what a program reads), text elsewhere.
void answer_error(h2o_req_t *req, int status, const std::string &message,
                  const std::vector<std::pair<std::string, std::string>> &headers = {})
{
    std::string path = text(req->input.path);
    if (path.compare(0, 5, "/api/") == 0)
        answer(req, status, "application/json", nlohmann::json{{"error", message}}.dump() + "\n",
               headers);
    else
        answer(req, status, "text/plain; charset=utf-8", message + "\n", headers);
}

// A request answered later.  H2O frees a request whose client went away:
// a pooled slot whose dispose runs then tells this object, so a late send()
// never touches a freed request.
class H2oLater : public HttpLater {
  public:
    explicit H2oLater(h2o_req_t *req) : req_(req) {}
    static std::shared_ptr<H2oLater> start(h2o_req_t *req)
    {
        auto later = std::make_shared<H2oLater>(req);
        using Watch = std::weak_ptr<H2oLater>;
        auto **slot = static_cast<Watch **>(
            h2o_mem_alloc_shared(&req->pool, sizeof(Watch *), [](void *p) noexcept {
                Watch *watch = *static_cast<Watch **>(p);
                if (auto l = watch->lock())
                    l->req_ = nullptr;
                delete watch;
            }));
        *slot = new Watch(later);
        return later;
    }
    void send(int status, const std::string &content_type, std::string body,
              std::vector<std::pair<std::string, std::string>> headers) override
    {
        h2o_req_t *req = req_;
        req_ = nullptr; // one answer
        if (req)
            answer(req, status, content_type, body, headers);
    }
    bool gone() const override { return req_ == nullptr; }

  private:
    h2o_req_t *req_;
};

class H2oResponder : public HttpResponder {
  public:
    H2oResponder(HttpServer::Impl &server, h2o_req_t *req) : server_(server), req_(req) {}
    void send(int status, const std::string &content_type, std::string body,
              std::vector<std::pair<std::string, std::string>> headers) override
    {
        claim();
        answer(req_, status, content_type, body, headers);
    }
    std::shared_ptr<HttpStream> stream(int status, const std::string &content_type) override
    {
        claim();
        return H2oStream::start(server_, req_, status, content_type, peer_of(req_));
    }
    std::shared_ptr<HttpLater> later() override
    {
        claim();
        return H2oLater::start(req_);
    }
    bool answered() const { return answered_; }

  private:
    void claim()
    {
        if (answered_)
            throw std::logic_error("a handler answered twice");
        answered_ = true;
    }
    HttpServer::Impl &server_;
    h2o_req_t *req_;
    bool answered_ = false;
};

bool prefix_matches(const std::string &prefix, const std::string &path)
{
    if (path.compare(0, prefix.size(), prefix) != 0)
        return false;
    return prefix.empty() || prefix.back() == '/' || path.size() == prefix.size() ||
           path[prefix.size()] == '/';
}

} // namespace

const std::string *HttpRequest::header(const std::string &lower_name) const
{
    for (const auto &[name, value] : headers)
        if (name == lower_name)
            return &value;
    return nullptr;
}

std::string HttpRequest::param(const std::string &name) const
{
    auto decode = [](const std::string &s) {
        std::string out;
        for (size_t i = 0; i < s.size(); i++) {
            if (s[i] == '+')
                out += ' ';
            else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit((unsigned char)s[i + 1]) &&
                     std::isxdigit((unsigned char)s[i + 2])) {
                out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
                i += 2;
            } else
                out += s[i];
        }
        return out;
    };
    size_t start = 0;
    while (start <= query.size()) {
        size_t end = query.find('&', start);
        if (end == std::string::npos)
            end = query.size();
        std::string pair = query.substr(start, end - start);
        size_t eq = pair.find('=');
        if (decode(pair.substr(0, eq)) == name)
            return eq == std::string::npos ? "" : decode(pair.substr(eq + 1));
        start = end + 1;
    }
    return "";
}

int HttpServer::Impl::on_request(h2o_handler_t *self, h2o_req_t *req) noexcept
{
    Impl *server = reinterpret_cast<RootHandler *>(self)->server;
    if (auto why = caught([&] { server->dispatch(req); })) {
        log_err("http: %s %s: %s", text(req->input.method).c_str(), text(req->input.path).c_str(),
                why->c_str());
        if (!req->_generator && req->res.status == 0)
            answer_error(req, 500, "internal error (logged)");
    }
    return 0;
}

void HttpServer::Impl::dispatch(h2o_req_t *req)
{
    // H2O's own bound on a request head is about 400 KiB (H2O_MAX_REQLEN):
    // ours is max_header_bytes.
    size_t head = req->input.method.len + req->input.path.len;
    for (size_t i = 0; i < req->headers.size; i++)
        head += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    if (head > config.max_header_bytes) {
        req->http1_is_persistent = 0;
        answer_error(req, 431, "request header too large: " + std::to_string(head) +
                                   " bytes (max_header_bytes = " +
                                   std::to_string(config.max_header_bytes) + ")");
        return;
    }
    if (!auth.enabled()) {
        run_route(req);
        return;
    }
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    std::string authorization = i < 0 ? "" : text(req->headers.entries[i].value);
    auth.check(loop, authorization, peer_of(req), [this, req](BasicAuth::Verdict verdict) {
        if (verdict == BasicAuth::Verdict::allowed)
            run_route(req);
        else if (verdict == BasicAuth::Verdict::busy)
            answer_error(req, 503, "too many logins being checked; try again",
                         {{"retry-after", "1"}});
        else
            answer_error(req, 401, "authentication required",
                         {{"www-authenticate", "Basic realm=\"kiln\", charset=\"UTF-8\""}});
    });
}

const HttpServer::Impl::Route *HttpServer::Impl::find_route(const std::string &method,
                                                            const std::string &path,
                                                            bool &path_known) const
{
    size_t longest = 0;
    path_known = false;
    for (const Route &r : routes)
        if (prefix_matches(r.prefix, path) && (!path_known || r.prefix.size() > longest)) {
            longest = r.prefix.size();
            path_known = true;
        }
    for (const Route &r : routes)
        if (path_known && r.prefix.size() == longest && prefix_matches(r.prefix, path) &&
            (r.method == method || (method == "HEAD" && r.method == "GET")))
            return &r;
    return nullptr;
}

void HttpServer::Impl::run_route(h2o_req_t *req)
{
    HttpRequest request;
    request.method = text(req->input.method);
    std::string target = text(req->input.path);
    size_t q = target.find('?');
    request.path = target.substr(0, q);
    request.query = q == std::string::npos ? "" : target.substr(q + 1);
    request.body = text(req->entity);
    request.peer = peer_of(req);
    for (size_t i = 0; i < req->headers.size; i++)
        request.headers.emplace_back(text(*req->headers.entries[i].name),
                                     text(req->headers.entries[i].value));

    bool path_known = false;
    const Route *route = find_route(request.method, request.path, path_known);
    if (!route) {
        if (path_known)
            answer_error(req, 405, "method " + request.method + " not allowed here");
        else
            answer_error(req, 404, "not found: " + request.path);
        return;
    }
    H2oResponder responder(*this, req);
    std::optional<std::string> why = caught([&] { route->handler(request, responder); });
    if (why)
        log_err("http: %s %s from %s: %s", request.method.c_str(), request.path.c_str(),
                request.peer.c_str(), why->c_str());
    else if (!responder.answered())
        log_err("http: %s %s: the handler gave no answer", request.method.c_str(),
                request.path.c_str());
    if (!responder.answered())
        answer_error(req, 500, "internal error (logged)");
}

} // namespace kiln
