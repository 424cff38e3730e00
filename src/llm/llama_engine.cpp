// llama_engine.cpp — the embedded LanguageModel: llama.cpp with continuous batching on one engine thread.
//
// One llama_model, ONE llama_context (unified KV cache of `context` cells, n_seq_max = max_sequences + 1),
// and ONE engine thread that owns the context. Sequence 0 holds the system prompt's KV, computed at load;
// sequences 1..max_sequences belong to Chats. A Chat takes a sequence at its first reply and keeps it (and
// its KV) until it is destroyed, so the next turn only decodes what changed since the last one (common
// token prefix, like llama-server's cache_prompt). When every sequence is taken, a reply takes the one of
// the Chat idle the longest (its KV is dropped; that Chat decodes its whole prompt next time), so
// max_sequences limits the calls generating at once, not the calls open; with all sequences generating,
// a reply waits in the queue. A fresh sequence starts as a copy of sequence 0
// (llama_memory_seq_cp shares the cells, it copies nothing), so only the rest of the prompt is decoded.
//
// reply() renders and tokenizes the prompt on the caller's thread (trimming old turns to fit), enqueues a
// Request and waits for it. Each engine step builds ONE llama_batch: one token for every generating
// request plus prompt chunks of newly admitted ones (up to n_batch in all, so a long prompt never stalls
// the others for more than one step), decodes it, and samples every request whose logits came out.
//
// Tools (create()'s `tools`): described in the system message (tool_parser.h, Qwen2.5's "# Tools" wording),
// so they are part of sequence 0's cached KV; each reply's text goes through a ToolCallParser, which takes
// the <tool_call>{…}</tool_call> parts out of the spoken text into Reply::tool_calls.
//
// Context budget: the KV cache is shared, so each sequence may use at most
//   system_tokens + (n_ctx - system_tokens) / max_sequences
// cells (the system prompt's cells are shared by all). With that, decoding can never run out of cells,
// and there is no context shifting to get wrong; longer histories lose their oldest turns.
// llama.h pulls in ggml-backend.h, which trips -Wshadow; its include path is not a system one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#include <ggml.h>
#include <gguf.h>
#include <llama.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <future>
#include <iterator>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "llm/engines.h"
#include "llm/tool_parser.h"

namespace parley::llm {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// llama.cpp (and ggml) log in fragments, some without a newline; each goes out as one debug line.
void llama_log_to_ours(ggml_log_level level, const char* text, void*) {
    std::string_view s = text ? text : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
    if (s.empty() || s == ".") return;
    PLOG_DEBUG("event=llama_log level={} msg=\"{}\"", int(level), s);
}

void init_llama_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        llama_log_set(llama_log_to_ours, nullptr);
        llama_backend_init();
    });
}

// llama.cpp aborts on some malformed inputs before it can report them, so check what we cheaply can
// first: the file, the GGUF header, the metadata (the gguf parser fails cleanly), and that the tensor
// data the metadata promises is inside the file.
bool validate_model_file(const std::string& path, std::string* error) {
    auto fail = [&](const std::string& why) {
        if (error) *error = "llm model " + path + ": " + why;
        return false;
    };
    if (path.empty()) {
        if (error) *error = "llm.model is empty: set the path of a GGUF chat model";
        return false;
    }
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) return fail("file not found");
    if (!std::filesystem::is_regular_file(status)) return fail("not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) return fail("cannot read its size: " + ec.message());
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return fail(std::string("cannot open: ") + std::strerror(errno));
    unsigned char head[8] = {};
    const size_t got = std::fread(head, 1, sizeof head, f);
    std::fclose(f);
    if (size == 0) return fail("file is empty");
    if (got < sizeof head) return fail("too short to be a GGUF file (" + std::to_string(size) + " bytes)");
    if (std::memcmp(head, "GGUF", 4) != 0) {
        // whisper.cpp / legacy ggml models start with the uint32 0x67676d6c ("lmgg" on disk).
        if (std::memcmp(head, "lmgg", 4) == 0)
            return fail("a legacy ggml file (whisper.cpp model?), not a GGUF");
        return fail("not a GGUF file (bad magic)");
    }
    const uint32_t version =
        uint32_t(head[4]) | uint32_t(head[5]) << 8 | uint32_t(head[6]) << 16 | uint32_t(head[7]) << 24;
    if (version < 2 || version > 3) return fail("unsupported GGUF version " + std::to_string(version));

    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* g = gguf_init_from_file(path.c_str(), params);
    if (!g) return fail("corrupt or truncated GGUF metadata");
    uint64_t need = gguf_get_data_offset(g);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        need = std::max<uint64_t>(
            need, gguf_get_data_offset(g) + gguf_get_tensor_offset(g, i) + gguf_get_tensor_size(g, i));
    }
    const bool has_arch = gguf_find_key(g, "general.architecture") >= 0;
    const int64_t n_tensors = gguf_get_n_tensors(g);
    gguf_free(g);
    if (!has_arch) return fail("no general.architecture: not a model (a vocab-only or other GGUF?)");
    if (n_tensors == 0) return fail("no tensors (vocab-only GGUF?)");
    if (size < need) {
        return fail("truncated: " + std::to_string(size) + " bytes, tensor data needs " +
                    std::to_string(need));
    }
    return true;
}

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence: a character split
// across tokens is held back until its last byte arrives.
size_t utf8_complete_prefix(const std::string& s) {
    const size_t n = s.size();
    for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
        const auto c = static_cast<unsigned char>(s[n - back]);
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
        size_t len = 1;
        if ((c & 0xE0) == 0xC0)
            len = 2;
        else if ((c & 0xF0) == 0xE0)
            len = 3;
        else if ((c & 0xF8) == 0xF0)
            len = 4;
        return len > back ? n - back : n;
    }
    return n;
}

size_t common_prefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return i;
}

// What a Chat owns in the engine. `seq` and `busy` change under Engine::mu_; `cached` only on the engine
// thread.
struct SeqState {
    int seq = -1;                     // -1 until the first reply is admitted
    bool busy = false;                // a reply is queued or running
    bool released = false;            // ~Chat: the engine thread has freed `seq`
    uint64_t last_used = 0;           // engine step of its last reply's end: the idlest is evicted first
    std::vector<llama_token> cached;  // tokens whose KV is in `seq`, at positions 0..size-1
};

struct Request {
    std::shared_ptr<SeqState> chat;
    std::vector<llama_token> prompt;
    int max_tokens = 0;
    Sampling sampling;
    const TokenCallback* on_piece = nullptr;
    CancelToken cancel;
    bool use_system_cache = false;
    Clock::time_point t0;

    // Engine thread only.
    llama_sampler* smpl = nullptr;
    size_t n_done = 0;      // prompt tokens in the KV
    llama_token next = -1;  // sampled, not yet decoded
    int batch_idx = -1;     // where its logits are in this step's batch, -1: none
    size_t n_chunk = 0;     // prompt tokens in this step's batch
    bool generating = false;
    std::string utf8_held;  // bytes of an unfinished UTF-8 character
    std::unique_ptr<ToolCallParser> tools;  // when tools are offered: splits calls from the text

    // Guarded by Engine::mu_.
    bool admitted = false, done = false;
    Reply reply;  // written by the engine thread, read by the caller once `done`
    std::condition_variable cv;
};

class Engine {
public:
    Engine() = default;
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;
    ~Engine() {
        if (thread_.joinable()) {
            {
                std::lock_guard lk(mu_);
                stop_ = true;
            }
            cv_.notify_all();
            thread_.join();
        }
        if (batch_.token) llama_batch_free(batch_);
        if (ctx_) llama_free(ctx_);
        if (model_) llama_model_free(model_);
    }

    bool load(const LlmConfig& config, const std::vector<Tool>& tools, std::string* error);
    Reply reply(const std::shared_ptr<SeqState>& chat, const std::vector<Message>& history,
                const TokenCallback& on_piece, const CancelToken& cancel, const Sampling* sampling);
    void release(const std::shared_ptr<SeqState>& chat);
    int active() const { return active_.load(); }
    std::string describe() const { return describe_; }

private:
    bool render(const std::vector<Message>& history, size_t first, std::string* out) const;
    bool tokenize(const std::string& text, std::vector<llama_token>* out) const;
    bool build_prompt(const std::vector<Message>& history, int max_tokens, std::vector<llama_token>* prompt,
                      int* allowed_tokens, std::string* error) const;
    bool decode_system_prompt(std::string* error);
    void run();
    void start(Request& r);
    void step(std::vector<std::shared_ptr<Request>>& running);
    void finish(Request& r, bool ok, const std::string& error);
    int idlest() const;
    llama_token sample(Request& r);

    LlmConfig config_;
    llama_model* model_ = nullptr;
    llama_context* ctx_ = nullptr;
    const llama_vocab* vocab_ = nullptr;
    llama_batch batch_{};
    int n_batch_ = 512;
    int n_vocab_ = 0;
    int n_ctx_ = 0;
    int budget_ = 0;  // KV cells one sequence may use (see the top of the file)
    std::string template_;
    std::string system_text_;  // the system message: llm.system_prompt, then the tools section if any
    std::vector<std::string> tool_names_;
    std::vector<llama_token> tag_tokens_;  // <tool_call> / </tool_call> when the vocabulary has them as
                                           // control tokens (rendered empty unless asked for)
    std::vector<llama_token> system_tokens_;  // KV in sequence 0 when non-empty
    mutable std::atomic<bool> logged_no_prefix_{false};
    std::string describe_;

    std::mutex mu_;
    std::condition_variable cv_;  // wakes the engine thread
    std::condition_variable released_cv_;
    std::deque<std::shared_ptr<Request>> pending_;
    std::vector<std::shared_ptr<SeqState>> releases_;
    bool stop_ = false;
    std::vector<int> free_seqs_;                     // guarded by mu_
    std::vector<std::shared_ptr<SeqState>> owners_;  // by sequence id, guarded by mu_
    uint64_t steps_ = 0;                             // engine thread only
    std::atomic<int> active_{0};
    std::thread thread_;
};

bool Engine::load(const LlmConfig& config, const std::vector<Tool>& tools, std::string* error) {
    config_ = config;
    system_text_ = config.system_prompt;
    if (!tools.empty()) {
        // In the system message, as Qwen2.5's template puts it: so it is in sequence 0's KV, decoded once.
        if (!system_text_.empty()) system_text_ += "\n\n";
        system_text_ += render_tools_section(tools);
        for (const auto& t : tools) tool_names_.push_back(t.name);
    }
    if (config.max_sequences < 1 || config.max_sequences > 64) {
        if (error) *error = "llm.max_sequences must be 1..64, got " + std::to_string(config.max_sequences);
        return false;
    }
    if (config.context < 128) {
        if (error) *error = "llm.context must be at least 128 tokens, got " + std::to_string(config.context);
        return false;
    }
    if (!validate_model_file(config.model, error)) return false;
    init_llama_once();
    const auto t0 = Clock::now();

    llama_model_params mp = llama_model_default_params();
    model_ = llama_model_load_from_file(config.model.c_str(), mp);
    if (!model_) {
        if (error) *error = "llm model " + config.model + ": llama.cpp could not load it (see debug log)";
        return false;
    }
    vocab_ = llama_model_get_vocab(model_);
    n_vocab_ = llama_vocab_n_tokens(vocab_);

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = uint32_t(config.context);
    cp.n_batch = cp.n_ubatch = uint32_t(n_batch_);
    cp.n_seq_max = uint32_t(config.max_sequences + 1);  // + sequence 0, the system prompt
    cp.kv_unified = true;  // one pool of cells, so seq_cp of the system prompt shares cells
    const int threads =
        config.threads > 0 ? config.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = true;
    // No flash attention: ggml's CPU kernel takes another path (tiled) when a batch holds several tokens,
    // so a call's greedy text depended on what the other calls were doing (9 of 80 48-token replies
    // differed from the same reply alone; 0 of 80 without it). Plain attention computes each token the
    // same way whatever the batch.
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    ctx_ = llama_init_from_model(model_, cp);
    if (!ctx_) {
        if (error)
            *error = "llm model " + config.model +
                     ": cannot create a llama context (n_ctx=" + std::to_string(config.context) + ")";
        return false;
    }
    n_ctx_ = int(llama_n_ctx(ctx_));
    batch_ = llama_batch_init(n_batch_, 0, 1);

    if (!tool_names_.empty()) {
        for (const char* tag : {"<tool_call>", "</tool_call>"}) {
            llama_token t[4];
            const int32_t n = llama_tokenize(vocab_, tag, int32_t(std::strlen(tag)), t, 4, false, true);
            if (n == 1 && (llama_vocab_get_attr(vocab_, t[0]) & LLAMA_TOKEN_ATTR_CONTROL))
                tag_tokens_.push_back(t[0]);
        }
    }

    const char* tmpl = llama_model_chat_template(model_, nullptr);
    template_ = tmpl ? tmpl : "";
    std::string probe;
    if (template_.empty() || !render({{"user", "hi"}}, 0, &probe)) {
        PLOG_WARN("event=llm_template_fallback model={} reason=\"{}\" using=chatml", config.model,
                  template_.empty() ? "no tokenizer.chat_template" : "template not supported by llama.cpp");
        template_ = "chatml";
    }

    for (int s = config.max_sequences; s >= 1; --s) free_seqs_.push_back(s);
    owners_.resize(size_t(config.max_sequences) + 1);
    // Even the system prompt is decoded on the engine thread: with OpenMP, ggml's worker team belongs to
    // the thread that calls llama_decode, and a second team (load's thread) made every step ~1.8x slower.
    std::promise<bool> ready;
    auto ready_f = ready.get_future();
    thread_ = std::thread([this, &ready, error] {
        if (!decode_system_prompt(error)) {
            ready.set_value(false);
            return;
        }
        budget_ = int(system_tokens_.size()) + (n_ctx_ - int(system_tokens_.size())) / config_.max_sequences;
        ready.set_value(true);
        run();
    });
    if (!ready_f.get()) return false;  // the thread has ended; ~Engine joins it

    char desc[128] = {};
    llama_model_desc(model_, desc, sizeof desc);
    describe_ = "llama.cpp " + std::string(desc) + " (" + config.model +
                "), n_ctx=" + std::to_string(n_ctx_) + ", sequences=" + std::to_string(config.max_sequences) +
                ", threads=" + std::to_string(threads);
    PLOG_INFO(
        "event=llm_loaded model={} desc=\"{}\" n_ctx={} sequences={} threads={} system_tokens={} tools={} "
        "seq_budget={} ms={:.0f}",
        config.model, desc, n_ctx_, config.max_sequences, threads, system_tokens_.size(), tool_names_.size(),
        budget_, ms_since(t0));
    return true;
}

bool Engine::render(const std::vector<Message>& history, size_t first, std::string* out) const {
    std::vector<llama_chat_message> msgs;
    if (!system_text_.empty()) msgs.push_back({"system", system_text_.c_str()});
    for (size_t i = first; i < history.size(); ++i)
        msgs.push_back({history[i].role.c_str(), history[i].content.c_str()});
    size_t chars = 64;
    for (const auto& m : msgs) chars += std::strlen(m.content) + 32;
    std::vector<char> buf(chars * 2);
    const bool add_ass = true;  // end with the assistant's header: the model writes the next message
    int32_t n = llama_chat_apply_template(template_.c_str(), msgs.data(), msgs.size(), add_ass, buf.data(),
                                          int32_t(buf.size()));
    if (n < 0) return false;
    if (size_t(n) > buf.size()) {
        buf.resize(size_t(n));
        n = llama_chat_apply_template(template_.c_str(), msgs.data(), msgs.size(), add_ass, buf.data(),
                                      int32_t(buf.size()));
        if (n < 0) return false;
    }
    if (out) out->assign(buf.data(), size_t(n));
    return true;
}

bool Engine::tokenize(const std::string& text, std::vector<llama_token>* out) const {
    int32_t n = -llama_tokenize(vocab_, text.data(), int32_t(text.size()), nullptr, 0, true, true);
    if (n <= 0) return false;
    out->resize(size_t(n));
    if (llama_tokenize(vocab_, text.data(), int32_t(text.size()), out->data(), n, true, true) != n)
        return false;
    // A template that writes the BOS text itself would get a second BOS from add_special.
    const llama_token bos = llama_vocab_bos(vocab_);
    if (out->size() >= 2 && bos != LLAMA_TOKEN_NULL && (*out)[0] == bos && (*out)[1] == bos)
        out->erase(out->begin());
    return true;
}

bool Engine::decode_system_prompt(std::string* error) {
    if (system_text_.empty()) return true;
    std::vector<llama_chat_message> msgs{{"system", system_text_.c_str()}};
    std::vector<char> buf(system_text_.size() * 2 + 256);
    int32_t n =
        llama_chat_apply_template(template_.c_str(), msgs.data(), 1, false, buf.data(), int32_t(buf.size()));
    if (n > int32_t(buf.size())) {
        buf.resize(size_t(n));
        n = llama_chat_apply_template(template_.c_str(), msgs.data(), 1, false, buf.data(),
                                      int32_t(buf.size()));
    }
    std::vector<llama_token> tokens;
    if (n < 0 || !tokenize(std::string(buf.data(), size_t(n)), &tokens)) {
        PLOG_WARN("event=llm_system_cache_off reason=\"cannot render the system prompt alone\"");
        return true;
    }
    const int limit = n_ctx_ / 2;
    if (int(tokens.size()) > limit) {
        if (error)
            *error = "llm.system_prompt" + std::string(tool_names_.empty() ? "" : " with the tools") +
                     " is " + std::to_string(tokens.size()) +
                     " tokens, more than half of "
                     "llm.context (" +
                     std::to_string(n_ctx_) + ")";
        return false;
    }
    llama_memory_t mem = llama_get_memory(ctx_);
    for (size_t i = 0; i < tokens.size();) {
        const size_t k = std::min(tokens.size() - i, size_t(n_batch_));
        batch_.n_tokens = 0;
        for (size_t j = 0; j < k; ++j) {
            const int b = batch_.n_tokens++;
            batch_.token[b] = tokens[i + j];
            batch_.pos[b] = llama_pos(i + j);
            batch_.n_seq_id[b] = 1;
            batch_.seq_id[b][0] = 0;
            batch_.logits[b] = false;
        }
        if (llama_decode(ctx_, batch_) != 0) {
            llama_memory_seq_rm(mem, 0, -1, -1);
            PLOG_WARN("event=llm_system_cache_off reason=\"decode failed\"");
            return true;
        }
        i += k;
    }
    system_tokens_ = std::move(tokens);
    return true;
}

bool Engine::build_prompt(const std::vector<Message>& history, int max_tokens,
                          std::vector<llama_token>* prompt, int* allowed_tokens, std::string* error) const {
    auto tokens_from = [&](size_t first, std::vector<llama_token>* out) {
        std::string text;
        return render(history, first, &text) && tokenize(text, out);
    };
    const size_t n = history.size();
    if (!tokens_from(0, prompt)) {
        if (error) *error = "cannot apply the chat template to the history";
        return false;
    }
    auto fits = [&](const std::vector<llama_token>& p) { return int(p.size()) + max_tokens <= budget_; };
    size_t first = 0;
    if (!fits(*prompt) && n > 1) {
        // Trim to two thirds of the budget, not just under it: a trimmed history changes the prompt's
        // prefix, so its KV must be decoded again; with room to spare, the next turns append to the cached
        // prefix instead of re-decoding the whole history every turn (measured: bench/conversation_bench.py).
        const int target = budget_ - budget_ / 3;
        auto fits_target = [&](const std::vector<llama_token>& p) { return int(p.size()) + max_tokens <= target; };
        // Fewer turns never need more tokens, so the first turn to keep can be found by bisection.
        size_t lo = 1, hi = n - 1;  // answer in [lo, hi]; hi always kept as a candidate
        std::vector<llama_token> p;
        while (lo < hi) {
            const size_t mid = (lo + hi) / 2;
            if (tokens_from(mid, &p) && fits_target(p))
                hi = mid;
            else
                lo = mid + 1;
        }
        first = lo;
        // A conversation should go on with the user's turn, not a dangling assistant one.
        if (first + 1 < n && history[first].role == "assistant") ++first;
        if (!tokens_from(first, prompt)) {
            if (error) *error = "cannot apply the chat template to the history";
            return false;
        }
        PLOG_DEBUG("event=llm_history_trimmed dropped={} kept={} prompt_tokens={} budget={}", first,
                   n - first, prompt->size(), budget_);
    }
    *allowed_tokens = std::min(max_tokens, budget_ - int(prompt->size()));
    if (*allowed_tokens < 1) {
        if (error)
            *error = "the last message is too long for the context (" + std::to_string(prompt->size()) +
                     " prompt tokens, " + std::to_string(budget_) + " per call)";
        return false;
    }
    return true;
}

Reply Engine::reply(const std::shared_ptr<SeqState>& chat, const std::vector<Message>& history,
                    const TokenCallback& on_piece, const CancelToken& cancel, const Sampling* sampling) {
    auto req = std::make_shared<Request>();
    req->t0 = Clock::now();
    if (cancel.cancelled()) {
        req->reply.error = "cancelled";
        return req->reply;
    }
    if (sampling) {
        req->sampling = *sampling;
    } else {
        req->sampling.temperature = config_.temperature;
        req->sampling.top_p = config_.top_p;
        req->sampling.top_k = config_.top_k;
        req->sampling.max_tokens = config_.max_tokens;
        req->sampling.seed = uint32_t(config_.seed);
    }
    std::string error;
    if (req->sampling.max_tokens < 1) {
        req->reply.error = "max_tokens must be at least 1";
        return req->reply;
    }
    if (!build_prompt(history, req->sampling.max_tokens, &req->prompt, &req->max_tokens, &error)) {
        PLOG_WARN("event=llm_reply_failed error=\"{}\"", error);
        req->reply.error = error;
        return req->reply;
    }
    // The prompt must go on past the cached part: its last token has to be decoded for logits.
    req->use_system_cache = !system_tokens_.empty() && req->prompt.size() > system_tokens_.size();
    if (req->use_system_cache && common_prefix(system_tokens_, req->prompt) != system_tokens_.size()) {
        req->use_system_cache = false;
        if (!logged_no_prefix_.exchange(true)) {
            PLOG_WARN(
                "event=llm_system_cache_unused reason=\"the template's system prompt is not a token prefix "
                "of the full prompt\" template_head=\"{}\"",
                template_.substr(0, 40));
        }
    }
    if (!tool_names_.empty()) req->tools = std::make_unique<ToolCallParser>(tool_names_);
    req->chat = chat;
    req->on_piece = &on_piece;
    req->cancel = cancel;

    std::unique_lock lk(mu_);
    if (chat->busy) {
        req->reply.error = "this Chat is already replying";
        return req->reply;
    }
    chat->busy = true;
    pending_.push_back(req);
    cv_.notify_all();
    // Wake now and then: a request still waiting for a free sequence is cancelled here, since the
    // engine thread may be asleep; an admitted one is cancelled by the engine within one step.
    while (!req->done) {
        req->cv.wait_for(lk, std::chrono::milliseconds(10));
        if (!req->done && !req->admitted && cancel.cancelled()) {
            pending_.erase(std::find(pending_.begin(), pending_.end(), req));
            chat->busy = false;
            req->reply.error = "cancelled";
            req->reply.total_ms = ms_since(req->t0);
            return req->reply;
        }
    }
    return req->reply;
}

void Engine::release(const std::shared_ptr<SeqState>& chat) {
    std::unique_lock lk(mu_);
    if (chat->seq < 0) return;  // never replied: nothing to free
    releases_.push_back(chat);
    cv_.notify_all();
    released_cv_.wait(lk, [&] { return chat->released; });
}

// The sequence of the Chat idle the longest, -1 if every Chat holding one is replying. Under mu_.
int Engine::idlest() const {
    int best = -1;
    for (size_t s = 1; s < owners_.size(); ++s) {
        const auto& o = owners_[s];
        if (o && !o->busy && (best < 0 || o->last_used < owners_[size_t(best)]->last_used)) best = int(s);
    }
    return best;
}

void Engine::run() {
    std::vector<std::shared_ptr<Request>> running;
    llama_memory_t mem = llama_get_memory(ctx_);
    for (;;) {
        std::vector<std::shared_ptr<SeqState>> releases;
        std::vector<std::shared_ptr<Request>> admitted;
        {
            std::unique_lock lk(mu_);
            auto admissible = [&] {
                for (const auto& r : pending_) {
                    if (r->chat->seq >= 0 || !free_seqs_.empty() || idlest() >= 0) return true;
                }
                return false;
            };
            cv_.wait(lk, [&] { return stop_ || !releases_.empty() || !running.empty() || admissible(); });
            if (stop_) break;  // only when the last Chat is gone: nothing can be pending or running
            releases.swap(releases_);
        }
        // Free sequences outside the lock (llama calls), then hand them out.
        for (const auto& c : releases) {
            llama_memory_seq_rm(mem, c->seq, -1, -1);
            c->cached.clear();
        }
        {
            std::lock_guard lk(mu_);
            for (const auto& c : releases) {
                owners_[size_t(c->seq)] = nullptr;
                free_seqs_.push_back(c->seq);
                c->seq = -1;
                c->released = true;
                active_.fetch_sub(1);
            }
            for (auto it = pending_.begin(); it != pending_.end();) {
                auto& r = *it;
                if (r->chat->seq < 0) {
                    if (free_seqs_.empty()) {
                        const int victim = idlest();
                        if (victim < 0) {
                            ++it;
                            continue;
                        }
                        // start() clears the sequence's KV for its new owner.
                        PLOG_DEBUG("event=llm_sequence_evicted seq={}", victim);
                        owners_[size_t(victim)]->seq = -1;
                        owners_[size_t(victim)]->cached.clear();
                        owners_[size_t(victim)] = nullptr;
                        free_seqs_.push_back(victim);
                        active_.fetch_sub(1);
                    }
                    r->chat->seq = free_seqs_.back();
                    free_seqs_.pop_back();
                    owners_[size_t(r->chat->seq)] = r->chat;
                    active_.fetch_add(1);
                }
                r->admitted = true;
                admitted.push_back(r);
                it = pending_.erase(it);
            }
        }
        if (!releases.empty()) released_cv_.notify_all();
        for (auto& r : admitted) {
            start(*r);
            running.push_back(std::move(r));
        }
        step(running);
    }
}

// Sets up an admitted request: its sampler, and its sequence's KV reused as far as it matches the prompt.
void Engine::start(Request& r) {
    const Sampling& s = r.sampling;
    r.smpl = llama_sampler_chain_init(llama_sampler_chain_default_params());
    if (s.temperature <= 0.0) {
        llama_sampler_chain_add(r.smpl, llama_sampler_init_greedy());
    } else {
        if (s.top_k > 0) llama_sampler_chain_add(r.smpl, llama_sampler_init_top_k(s.top_k));
        if (s.top_p > 0.0 && s.top_p < 1.0)
            llama_sampler_chain_add(r.smpl, llama_sampler_init_top_p(float(s.top_p), 1));
        llama_sampler_chain_add(r.smpl, llama_sampler_init_temp(float(s.temperature)));
        llama_sampler_chain_add(r.smpl, llama_sampler_init_dist(s.seed == 0 ? LLAMA_DEFAULT_SEED : s.seed));
    }
    llama_memory_t mem = llama_get_memory(ctx_);
    SeqState& st = *r.chat;
    size_t keep = common_prefix(st.cached, r.prompt);
    if (r.use_system_cache && keep < system_tokens_.size()) {
        llama_memory_seq_rm(mem, st.seq, -1, -1);
        llama_memory_seq_cp(mem, 0, st.seq, -1, -1);
        keep = system_tokens_.size();
    } else {
        keep = std::min(keep, r.prompt.size() - 1);  // decode at least one token, for its logits
        if (!llama_memory_seq_rm(mem, st.seq, llama_pos(keep), -1)) {
            llama_memory_seq_rm(mem, st.seq, -1, -1);
            keep = 0;
        }
    }
    st.cached.assign(r.prompt.begin(), r.prompt.begin() + long(keep));
    r.n_done = keep;
    r.reply.prompt_tokens = int(r.prompt.size());
    r.reply.reused_prompt_tokens = int(keep);
}

void Engine::step(std::vector<std::shared_ptr<Request>>& running) {
    ++steps_;
    for (auto& r : running) {
        if (r->cancel.cancelled()) finish(*r, false, "cancelled");
    }
    std::erase_if(running, [](const auto& r) { return r->smpl == nullptr; });
    if (running.empty()) return;

    // One batch: first a token for every generating request, then prompt chunks in admission order.
    batch_.n_tokens = 0;
    auto add = [&](llama_token t, size_t pos, int seq, bool logits) {
        const int b = batch_.n_tokens++;
        batch_.token[b] = t;
        batch_.pos[b] = llama_pos(pos);
        batch_.n_seq_id[b] = 1;
        batch_.seq_id[b][0] = seq;
        batch_.logits[b] = logits;
        return b;
    };
    for (auto& r : running) {
        r->batch_idx = -1;
        r->n_chunk = 0;
        if (r->generating) r->batch_idx = add(r->next, r->chat->cached.size(), r->chat->seq, true);
    }
    for (auto& r : running) {
        if (r->generating) continue;
        const size_t room = size_t(n_batch_ - batch_.n_tokens);
        if (room == 0) break;
        const size_t k = std::min(room, r->prompt.size() - r->n_done);
        for (size_t j = 0; j < k; ++j) {
            const size_t i = r->n_done + j;
            const bool last = i + 1 == r->prompt.size();
            const int b = add(r->prompt[i], i, r->chat->seq, last);
            if (last) r->batch_idx = b;
        }
        r->n_chunk = k;
    }

    const int rc = llama_decode(ctx_, batch_);
    if (rc != 0) {
        // Should not happen with the per-sequence budget; fail who was in the batch, keep the rest going.
        llama_memory_t mem = llama_get_memory(ctx_);
        for (auto& r : running) {
            if (r->batch_idx < 0 && r->n_chunk == 0) continue;
            llama_memory_seq_rm(mem, r->chat->seq, -1, -1);
            r->chat->cached.clear();
            finish(*r, false, "llama_decode failed (" + std::to_string(rc) + ")");
        }
        std::erase_if(running, [](const auto& r) { return r->smpl == nullptr; });
        PLOG_ERROR("event=llm_decode_failed rc={} tokens={}", rc, batch_.n_tokens);
        return;
    }

    char piece[256];
    for (auto& r : running) {
        SeqState& st = *r->chat;
        if (r->generating) {
            st.cached.push_back(r->next);
        } else {
            st.cached.insert(st.cached.end(), r->prompt.begin() + long(r->n_done),
                             r->prompt.begin() + long(r->n_done + r->n_chunk));
            r->n_done += r->n_chunk;
        }
        if (r->batch_idx < 0) continue;
        const llama_token tok = sample(*r);
        if (!r->generating) {
            r->generating = true;
            r->reply.first_token_ms = ms_since(r->t0);
        }
        if (llama_vocab_is_eog(vocab_, tok)) {
            finish(*r, true, "");
            continue;
        }
        r->reply.generated_tokens++;
        // Special (control) tokens are not text to speak: special=false renders them empty.
        // Except the tool-call tags, when a vocabulary has them as control tokens: the parser needs them.
        const bool tag = !tag_tokens_.empty() &&
                         std::find(tag_tokens_.begin(), tag_tokens_.end(), tok) != tag_tokens_.end();
        const int n = llama_token_to_piece(vocab_, tok, piece, sizeof piece, 0, tag);
        if (n > 0) r->utf8_held.append(piece, size_t(n));
        const size_t ready = utf8_complete_prefix(r->utf8_held);
        if (ready > 0) {
            std::string out = r->utf8_held.substr(0, ready);
            r->utf8_held.erase(0, ready);
            if (r->tools) out = r->tools->feed(out);  // the text outside <tool_call>…</tool_call>
            r->reply.text += out;
            if (!out.empty() && *r->on_piece && !(*r->on_piece)(out)) {
                finish(*r, false, "cancelled");
                continue;
            }
        }
        if (r->reply.generated_tokens >= r->max_tokens) {
            finish(*r, true, "");
            continue;
        }
        r->next = tok;
    }
    std::erase_if(running, [](const auto& r) { return r->smpl == nullptr; });
}

llama_token Engine::sample(Request& r) {
    if (r.sampling.temperature > 0.0) return llama_sampler_sample(r.smpl, ctx_, r.batch_idx);
    // Greedy: the first highest logit, exactly what llama_sampler_init_greedy picks, without building
    // the chain's candidate array (151 936 entries for Qwen vocabularies: a third of a tiny model's step).
    // Two passes: the maximum with 8 independent lanes (a single running argmax is one long dependency
    // chain, ~10 cycles a token), then its first position.
    const float* logits = llama_get_logits_ith(ctx_, r.batch_idx);
    float lane[8];
    std::fill(std::begin(lane), std::end(lane), logits[0]);
    llama_token t = 0;
    for (; t + 8 <= n_vocab_; t += 8) {
        for (int k = 0; k < 8; ++k) lane[k] = std::max(lane[k], logits[t + k]);
    }
    float best_v = *std::max_element(std::begin(lane), std::end(lane));
    for (; t < n_vocab_; ++t) best_v = std::max(best_v, logits[t]);
    llama_token best = 0;
    while (best < n_vocab_ - 1 && logits[best] != best_v) ++best;
    llama_sampler_accept(r.smpl, best);
    return best;
}

void Engine::finish(Request& r, bool ok, const std::string& error) {
    // A complete reply ends with whatever bytes the model produced, even a broken character; a cancelled
    // one keeps only what was already delivered.
    if (ok) {
        std::string rest = std::move(r.utf8_held);
        r.utf8_held.clear();
        if (r.tools) rest = r.tools->feed(rest) + r.tools->finish();  // an unterminated call is dropped here
        r.reply.text += rest;
        if (!rest.empty() && *r.on_piece) (*r.on_piece)(rest);
    }
    // Calls completed before a cancel are returned too (ok = false says the reply was cut short).
    if (r.tools) r.reply.tool_calls = r.tools->take_calls();
    llama_sampler_free(r.smpl);
    r.smpl = nullptr;
    r.reply.ok = ok;
    r.reply.error = error;
    r.reply.total_ms = ms_since(r.t0);
    PLOG_DEBUG(
        "event=llm_reply_done ok={} error=\"{}\" seq={} prompt_tokens={} reused={} generated={} "
        "tool_calls={} first_token_ms={:.1f} total_ms={:.1f}",
        ok, error, r.chat->seq, r.reply.prompt_tokens, r.reply.reused_prompt_tokens, r.reply.generated_tokens,
        r.reply.tool_calls.size(), r.reply.first_token_ms, r.reply.total_ms);
    {
        std::lock_guard lk(mu_);
        r.chat->busy = false;
        r.chat->last_used = steps_;
        r.done = true;
    }
    r.cv.notify_all();
}

class LlamaChat : public Chat {
public:
    explicit LlamaChat(std::shared_ptr<Engine> engine)
        : engine_(std::move(engine)), state_(std::make_shared<SeqState>()) {}
    ~LlamaChat() override { engine_->release(state_); }
    Reply reply(const std::vector<Message>& history, const TokenCallback& on_piece, const CancelToken& cancel,
                const Sampling* sampling) override {
        return engine_->reply(state_, history, on_piece, cancel, sampling);
    }

private:
    std::shared_ptr<Engine> engine_;  // Chats keep the engine alive
    std::shared_ptr<SeqState> state_;
};

class LlamaModel : public LanguageModel {
public:
    explicit LlamaModel(std::shared_ptr<Engine> engine) : engine_(std::move(engine)) {}
    std::unique_ptr<Chat> open() override { return std::make_unique<LlamaChat>(engine_); }
    std::string describe() const override { return engine_->describe(); }
    int active_sequences() const override { return engine_->active(); }

private:
    std::shared_ptr<Engine> engine_;
};

}  // namespace

std::unique_ptr<LanguageModel> make_llama_model(const LlmConfig& config, std::string* error,
                                                const std::vector<Tool>& tools) {
    auto engine = std::make_shared<Engine>();
    std::string err;
    if (!engine->load(config, tools, &err)) {
        PLOG_ERROR("event=llm_load_failed model={} error=\"{}\"", config.model, err);
        if (error) *error = err;
        return nullptr;
    }
    return std::make_unique<LlamaModel>(std::move(engine));
}

}  // namespace parley::llm
