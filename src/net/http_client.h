// http_client.h — the small libcurl client behind the remote (OpenAI-compatible) engines.
//
//   parley::net::HttpRequest req;
//   req.url = "http://127.0.0.1:8080/v1/chat/completions";
//   req.body = json.dump();
//   req.bearer_token = config.api_key;
//   auto r = parley::net::perform(req, [&](std::string_view chunk) { sse.feed(chunk, on_event); return true; },
//                                 token);
//   if (!r.ok) log(r.error);
//
// One CURL easy handle per request, so any number of threads may call perform() at once; libcurl's global
// state is initialised once, on first use. The response body of a 2xx reply is streamed to the callback
// chunk by chunk as it arrives; the body of any other status is collected (first 4 KiB) into the error.
//
// Timeouts: connect_timeout_ms bounds the TCP connect; timeout_ms is an *inactivity* timeout — the request
// fails when no byte arrives for that long (a stream that keeps producing never times out). Retries: a
// failure before any response byte reached the callback (connection refused, connection reset, 5xx or 429)
// is retried up to `retries` times with exponential backoff (backoff_ms, 2x, 4x, ...); once a byte was
// delivered nothing is retried, since the caller has already acted on it. Cancel: the token is checked at
// least every 20 ms while waiting (and in curl's xferinfo callback); a cancelled request returns
// error="cancelled" promptly and closes the connection. Errors never throw.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/cancel.h"

namespace parley::net {

struct MultipartPart {
    std::string name;
    std::string data;
    std::string filename;      // not empty: sent as a file part
    std::string content_type;  // e.g. "audio/wav"; empty = curl's default
};

struct HttpRequest {
    std::string url;
    std::string body;                          // POST body (ignored when `multipart` is not empty)
    std::string content_type = "application/json";
    std::vector<MultipartPart> multipart;      // not empty: multipart/form-data POST
    bool get = false;                          // GET instead of POST (health checks)
    std::string method;                        // other than GET/POST, e.g. "DELETE" or "PUT" (body as POST)
    std::string bearer_token;                  // "Authorization: Bearer ..." when not empty
    std::vector<std::string> headers;          // extra "Name: value" lines
    int connect_timeout_ms = 2000;
    int timeout_ms = 20000;                    // no byte for this long = error
    int retries = 2;
    int backoff_ms = 100;                      // first retry delay; doubles each time
};

struct HttpResponse {
    bool ok = false;           // transfer complete and status 2xx
    std::string error;         // one line: "connect to http://127.0.0.1:8080 failed: Connection refused"
    long status = 0;           // HTTP status, 0 when none was received
    std::string error_body;    // first 4 KiB of a non-2xx body
    int attempts = 0;          // 1 + retries used
    int64_t bytes = 0;         // body bytes delivered to the callback
    bool cancelled = false;
    bool timed_out = false;    // the inactivity (or connect) timeout fired
};

// Receives the body of a 2xx response as it arrives. Return false to stop (reported as "cancelled").
using BodyCallback = std::function<bool(std::string_view chunk)>;

// Blocking; any thread.
HttpResponse perform(const HttpRequest& request, const BodyCallback& on_body, const CancelToken& cancel);

// Convenience: collects the whole 2xx body into *body.
HttpResponse perform_collect(const HttpRequest& request, std::string* body, const CancelToken& cancel);

// "http://host:port/v1" + "/chat/completions", without doubling or dropping the slash.
std::string join_url(std::string_view base, std::string_view path);

// ---- Server-sent events (text/event-stream) ------------------------------------------------------

struct SseEvent {
    std::string event;  // the "event:" field; empty = "message"
    std::string data;   // "data:" lines joined with '\n'
    std::string id;
};

// Incremental parser: feed() bytes as they arrive, in chunks split anywhere (inside a line, between
// "\r" and "\n"). Lines end with "\n", "\r\n" or "\r"; ":" lines are comments; "field: value" drops one
// space after the colon; an empty line dispatches the event when it has data. Pure: no I/O, no threads.
class SseParser {
public:
    using EventCallback = std::function<bool(const SseEvent& event)>;  // false = stop parsing

    // Returns false when a callback asked to stop (the rest of the chunk is dropped).
    bool feed(std::string_view chunk, const EventCallback& on_event);
    // End of stream: dispatches a pending event that was not terminated by an empty line (lenient: some
    // servers close right after the last "data:" line). Returns false when the callback asked to stop.
    bool finish(const EventCallback& on_event);

private:
    bool line(std::string_view text, const EventCallback& on_event);

    std::string partial_;     // bytes of an unterminated line
    bool after_cr_ = false;   // the previous chunk ended with '\r' (a following '\n' belongs to it)
    SseEvent pending_;
    bool has_data_ = false;
};

// True when an event's data is the OpenAI end-of-stream marker "[DONE]".
inline bool is_done_marker(const SseEvent& event) { return event.data == "[DONE]"; }

}  // namespace parley::net
