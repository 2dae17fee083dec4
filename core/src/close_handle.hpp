#pragma once
// Closing a heap-allocated libuv handle, shared by net.cpp and client.cpp.
#include <uv.h>

namespace kiln {

// uv_close, then delete the handle once libuv is done with it.
template <typename Handle> void close_and_delete(Handle *h)
{
    uv_close(reinterpret_cast<uv_handle_t *>(h),
             [](uv_handle_t *handle) noexcept { delete reinterpret_cast<Handle *>(handle); });
}

} // namespace kiln
