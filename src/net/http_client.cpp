// http_client.cpp — libcurl behind a blocking, cancellable, streaming perform().
//
// Each attempt drives its own easy handle through its own multi handle, polling with a short timeout: that
// lets this thread check the cancel token and the inactivity clock every few milliseconds whatever the
// server does (curl's xferinfo callback alone runs only about once a second while a transfer is idle).
#include "net/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/log.h"

namespace parley::net {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kErrorBodyMax = 4096;
constexpr int kPollMs = 20;

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// "http://127.0.0.1:8080/v1/x" -> "http://127.0.0.1:8080": what the connect error names.
std::string origin_of(const std::string& url) {
    const size_t scheme = url.find("://");
    const size_t start = scheme == std::string::npos ? 0 : scheme + 3;
    const size_t slash = url.find('/', start);
    return slash == std::string::npos ? url : url.substr(0, slash);
}

// The state of one attempt, touched only by the thread inside perform() (curl calls back on it).
struct Attempt {
    const HttpRequest* request = nullptr;
    const BodyCallback* on_body = nullptr;
    const CancelToken* cancel = nullptr;
    CURL* easy = nullptr;
    Clock::time_point last_activity;
    long status = 0;
    bool status_known = false;
    bool deliver = false;       // 2xx: the body goes to the callback
    int64_t delivered = 0;      // bytes given to the callback
    std::string error_body;
    bool cancelled = false;     // token cancelled or the callback returned false
    bool timed_out = false;     // inactivity

    // Checked from the poll loop and from curl's xferinfo callback. True = abort the transfer.
    bool should_abort() {
        if (cancel->cancelled()) cancelled = true;
        else if (Clock::now() - last_activity > std::chrono::milliseconds(request->timeout_ms)) timed_out = true;
        return cancelled || timed_out;
    }
};

size_t on_header(char* data, size_t size, size_t count, void* user) {
    auto* a = static_cast<Attempt*>(user);
    a->last_activity = Clock::now();
    (void)data;
    return size * count;
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
    auto* a = static_cast<Attempt*>(user);
    const size_t n = size * count;
    a->last_activity = Clock::now();
    if (!a->status_known) {
        curl_easy_getinfo(a->easy, CURLINFO_RESPONSE_CODE, &a->status);
        a->status_known = true;
        a->deliver = a->status >= 200 && a->status < 300;
    }
    if (!a->deliver) {
        const size_t room = kErrorBodyMax - std::min(kErrorBodyMax, a->error_body.size());
        a->error_body.append(data, std::min(room, n));
        return n;
    }
    if (a->cancel->cancelled()) {
        a->cancelled = true;
        return 0;  // aborts with CURLE_WRITE_ERROR
    }
    a->delivered += static_cast<int64_t>(n);
    if (!(*a->on_body)(std::string_view(data, n))) {
        a->cancelled = true;
        return 0;
    }
    return n;
}

int on_xferinfo(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Attempt*>(user)->should_abort() ? 1 : 0;
}

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\r', ' ');
    while (!s.empty() && s.back() == ' ') s.pop_back();
    if (s.size() > 300) s = s.substr(0, 300) + "...";
    return s;
}

enum class Outcome { ok, retry, fail };

// One attempt: returns what to do next and fills `response`.
Outcome attempt_once(const HttpRequest& req, const BodyCallback& on_body, const CancelToken& cancel,
                     HttpResponse* response) {
    Attempt a;
    a.request = &req;
    a.on_body = &on_body;
    a.cancel = &cancel;
    a.last_activity = Clock::now();

    CURL* easy = curl_easy_init();
    CURLM* multi = curl_multi_init();
    if (easy == nullptr || multi == nullptr) {
        if (easy) curl_easy_cleanup(easy);
        if (multi) curl_multi_cleanup(multi);
        response->error = "curl initialisation failed";
        return Outcome::fail;
    }
    a.easy = easy;
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_slist* headers = nullptr;
    curl_mime* mime = nullptr;

    curl_easy_setopt(easy, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::max(1, req.connect_timeout_ms)));
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(easy, CURLOPT_XFERINFODATA, &a);
    curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
    // A fresh connection per request: nothing is shared between threads, and a server that died between
    // requests is not mistaken for one that died mid-reply.
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);

    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip for uploads
    if (!req.bearer_token.empty()) {
        headers = curl_slist_append(headers, ("Authorization: Bearer " + req.bearer_token).c_str());
    }
    for (const auto& h : req.headers) headers = curl_slist_append(headers, h.c_str());

    if (req.get) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else if (!req.multipart.empty()) {
        mime = curl_mime_init(easy);
        for (const auto& part : req.multipart) {
            curl_mimepart* p = curl_mime_addpart(mime);
            curl_mime_name(p, part.name.c_str());
            curl_mime_data(p, part.data.data(), part.data.size());
            if (!part.filename.empty()) curl_mime_filename(p, part.filename.c_str());
            if (!part.content_type.empty()) curl_mime_type(p, part.content_type.c_str());
        }
        curl_easy_setopt(easy, CURLOPT_MIMEPOST, mime);
    } else {
        headers = curl_slist_append(headers, ("Content-Type: " + req.content_type).c_str());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req.body.data());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
    if (!req.method.empty()) curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);

    curl_multi_add_handle(multi, easy);
    CURLcode code = CURLE_OK;
    bool finished = false;
    while (true) {
        int running = 0;
        const CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
            snprintf(errbuf, sizeof errbuf, "%s", curl_multi_strerror(mc));
            code = CURLE_RECV_ERROR;
            finished = true;
            break;
        }
        int queued = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
            if (msg->msg == CURLMSG_DONE) {
                code = msg->data.result;
                finished = true;
            }
        }
        if (finished || running == 0) break;
        if (a.should_abort()) break;
        curl_multi_poll(multi, nullptr, 0, kPollMs, nullptr);
    }
    if (!a.status_known) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &a.status);
    long os_errno = 0;
    curl_easy_getinfo(easy, CURLINFO_OS_ERRNO, &os_errno);

    curl_multi_remove_handle(multi, easy);  // closes the connection (FORBID_REUSE): the stream stops here
    curl_easy_cleanup(easy);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    if (mime) curl_mime_free(mime);

    response->status = a.status;
    response->bytes += a.delivered;
    const std::string curl_msg = errbuf[0] ? one_line(errbuf) : curl_easy_strerror(code);

    if (a.cancelled) {
        response->cancelled = true;
        response->error = "cancelled";
        return Outcome::fail;
    }
    if (a.timed_out) {
        response->timed_out = true;
        response->error = "no data for " + std::to_string(req.timeout_ms) + " ms from " + origin_of(req.url);
        return Outcome::fail;
    }
    if (code == CURLE_ABORTED_BY_CALLBACK) {  // should_abort() raced with the loop's own check
        response->error = "cancelled";
        response->cancelled = true;
        return Outcome::fail;
    }
    if (code == CURLE_OK) {
        if (a.status >= 200 && a.status < 300) {
            response->ok = true;
            return Outcome::ok;
        }
        response->error_body = a.error_body;
        response->error = "HTTP " + std::to_string(a.status) + " from " + req.url;
        if (!a.error_body.empty()) response->error += ": " + one_line(a.error_body);
        return (a.status >= 500 || a.status == 429) ? Outcome::retry : Outcome::fail;
    }
    if (code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST ||
        (code == CURLE_OPERATION_TIMEDOUT && !a.status_known && a.status == 0)) {
        std::string why = curl_msg;
        if (code == CURLE_COULDNT_CONNECT && os_errno != 0) why = std::strerror(static_cast<int>(os_errno));
        if (code == CURLE_OPERATION_TIMEDOUT) {
            why = "no answer within " + std::to_string(req.connect_timeout_ms) + " ms";
            response->timed_out = true;
        }
        response->error = "connect to " + origin_of(req.url) + " failed: " + why;
        return Outcome::retry;
    }
    if (a.delivered > 0) {
        response->error = "server closed the stream mid-reply (" + curl_msg + ")";
        return Outcome::fail;
    }
    response->error = "request to " + req.url + " failed: " + curl_msg;
    const bool transient = code == CURLE_GOT_NOTHING || code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR ||
                           code == CURLE_PARTIAL_FILE;
    return transient ? Outcome::retry : Outcome::fail;
}

}  // namespace

std::string join_url(std::string_view base, std::string_view path) {
    std::string out(base);
    while (!out.empty() && out.back() == '/') out.pop_back();
    if (!path.empty() && path.front() != '/') out += '/';
    out += path;
    return out;
}

HttpResponse perform(const HttpRequest& request, const BodyCallback& on_body, const CancelToken& cancel) {
    global_init();
    HttpResponse response;
    const int max_attempts = 1 + std::max(0, request.retries);
    int delay_ms = std::max(1, request.backoff_ms);
    for (int attempt = 1;; ++attempt) {
        response.attempts = attempt;
        response.error.clear();
        response.timed_out = false;
        const Outcome outcome = attempt_once(request, on_body, cancel, &response);
        if (outcome != Outcome::retry || attempt >= max_attempts || response.bytes > 0) break;
        PLOG_DEBUG("event=http_retry url={} attempt={} delay_ms={} error=\"{}\"", request.url, attempt, delay_ms,
                   response.error);
        // Cancellable backoff.
        const auto until = Clock::now() + std::chrono::milliseconds(delay_ms);
        while (Clock::now() < until && !cancel.cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (cancel.cancelled()) {
            response.cancelled = true;
            response.error = "cancelled";
            break;
        }
        delay_ms *= 2;
    }
    if (!response.ok && response.attempts > 1 && !response.cancelled) {
        response.error += " (after " + std::to_string(response.attempts) + " attempts)";
    }
    return response;
}

HttpResponse perform_collect(const HttpRequest& request, std::string* body, const CancelToken& cancel) {
    body->clear();
    return perform(
        request,
        [body](std::string_view chunk) {
            body->append(chunk);
            return true;
        },
        cancel);
}

// ---- SSE ----------------------------------------------------------------------------------------

bool SseParser::feed(std::string_view chunk, const EventCallback& on_event) {
    size_t i = 0;
    if (after_cr_) {
        after_cr_ = false;
        if (!chunk.empty() && chunk.front() == '\n') i = 1;  // the "\n" of a "\r\n" split across chunks
    }
    while (i < chunk.size()) {
        size_t j = chunk.find_first_of("\r\n", i);
        if (j == std::string_view::npos) {
            partial_.append(chunk.substr(i));
            break;
        }
        bool keep_going;
        if (partial_.empty()) {
            keep_going = line(chunk.substr(i, j - i), on_event);
        } else {
            partial_.append(chunk.substr(i, j - i));
            const std::string text = std::move(partial_);
            partial_.clear();
            keep_going = line(text, on_event);
        }
        if (chunk[j] == '\r') {
            if (j + 1 < chunk.size()) {
                if (chunk[j + 1] == '\n') ++j;
            } else {
                after_cr_ = true;
            }
        }
        i = j + 1;
        if (!keep_going) return false;
    }
    return true;
}

bool SseParser::finish(const EventCallback& on_event) {
    bool keep_going = true;
    if (!partial_.empty()) {
        const std::string text = std::move(partial_);
        partial_.clear();
        keep_going = line(text, on_event);
    }
    if (keep_going && has_data_) keep_going = line({}, on_event);
    after_cr_ = false;
    pending_ = {};
    has_data_ = false;
    return keep_going;
}

bool SseParser::line(std::string_view text, const EventCallback& on_event) {
    if (text.empty()) {
        if (!has_data_) {
            pending_.event.clear();
            return true;
        }
        SseEvent event = std::move(pending_);
        pending_ = {};
        pending_.id = event.id;  // the last event id persists (as in the EventSource spec)
        has_data_ = false;
        return on_event(event);
    }
    if (text.front() == ':') return true;  // comment (keep-alive)
    const size_t colon = text.find(':');
    std::string_view field = text.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
        value = text.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (field == "data") {
        if (has_data_) pending_.data += '\n';
        pending_.data.append(value);
        has_data_ = true;
    } else if (field == "event") {
        pending_.event.assign(value);
    } else if (field == "id") {
        pending_.id.assign(value);
    }
    return true;  // "retry" and unknown fields are ignored
}

}  // namespace parley::net
