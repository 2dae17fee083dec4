#pragma once
// HTTP basic authentication against [http] auth_file: one account a line,
// "user:HASH", HASH from libsodium's crypto_pwhash_str (argon2id), the file
// mode 600 like every secret file.  Checking a password is slow and memory-
// hungry by design, so it runs on libuv's thread pool, at most
// kMaxVerifying at once; a password once verified is remembered (as a keyed
// hash, never in clear) so the requests that follow cost a lookup.
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <uv.h>

namespace kiln {

// "user:hash" lines (blank lines and '#' comments allowed) → user → hash;
// throws std::runtime_error "line N: why".
std::map<std::string, std::string> parse_auth_accounts(const std::string &text);

class BasicAuth {
  public:
    enum class Verdict { allowed, denied, busy };
    static constexpr size_t kMaxVerifying = 2;  // argon2id checks running at once
    static constexpr size_t kMaxWaiting = 64;   // requests waiting on them
    static constexpr size_t kMaxRemembered = 1024;

    // Read and parse the file; false with "http: auth_file PATH: why".
    bool load(const std::string &path, std::string &error);
    bool enabled() const { return loaded_; }
    // Check an Authorization header; `done` runs on the loop, now (known
    // password, malformed header, unknown user) or once the hash is checked.
    void check(uv_loop_t *loop, const std::string &authorization, const std::string &peer,
               std::function<void(Verdict)> done);

  private:
    struct Work;
    static void verify(uv_work_t *req) noexcept;
    static void verified(uv_work_t *req, int status) noexcept;

    bool loaded_ = false;
    std::string path_;
    std::map<std::string, std::string> accounts_;
    std::string key_;                  // for the remembered keyed hashes
    std::set<std::string> remembered_; // keyed hashes of "user:password" found good
    std::map<std::string, std::vector<std::function<void(Verdict)>>> waiting_; // by keyed hash
    size_t verifying_ = 0, waiters_ = 0;
};

} // namespace kiln
