#pragma once
// Files that are either wholly the old content or wholly the new one, even
// across a crash: write a temporary file beside the target, fsync it, rename
// it over the target, fsync the directory.  The async form does that on the
// libuv thread pool so the loop never waits for the disk.
#include <functional>
#include <string>

#include <uv.h>

namespace kiln {

// Blocking; 0 or -errno.  Creates missing parent directories (mode 0750).
int write_file_atomic(const std::string &path, const std::string &data);

// Blocking; 0 or -errno (-ENOENT when absent).
int read_whole_file(const std::string &path, std::string &data);

// mkdir -p; 0 or -errno.
int make_dirs(const std::string &path, unsigned mode = 0750);

// On the thread pool; `done(status)` runs on the loop, exactly once.
void write_file_atomic_async(uv_loop_t *loop, std::string path, std::string data,
                             std::function<void(int status)> done);
// unlink on the thread pool; done(0 or -errno) on the loop (may be empty).
void remove_file_async(uv_loop_t *loop, std::string path, std::function<void(int status)> done);

} // namespace kiln
