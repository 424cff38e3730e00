// srtp_session.cpp — SrtpSession over libsrtp2 (see srtp.h).
#include <srtp2/srtp.h>

#include <cstring>
#include <mutex>

#include "media/srtp.h"

namespace parley::media {

namespace {

static_assert(SrtpSession::kSrtpMaxTrailer >= SRTP_MAX_TRAILER_LEN, "room for libsrtp2's trailer");

// libsrtp2 keeps process-wide state (crypto kernel); srtp_init must run once before any session.
srtp_err_status_t init_once() {
    static std::once_flag once;
    static srtp_err_status_t status = srtp_err_status_fail;
    std::call_once(once, [] {
        status = srtp_init();
        // libsrtp2 2.5 answers a second srtp_init (someone else in the process initialised it first) with
        // bad_param from re-loading its debug module, after checking that its crypto kernel is up: usable.
        if (status == srtp_err_status_bad_param) status = srtp_err_status_ok;
    });
    return status;
}

void set_policy(srtp_policy_t& p, SrtpSuite suite, srtp_ssrc_type_t direction, unsigned char* key) {
    std::memset(&p, 0, sizeof p);
    if (suite == SrtpSuite::kAesCm128HmacSha1_32)
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_32(&p.rtp);
    else
        srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtp);
    // RFC 4568 §6.2: SRTCP always uses the 80-bit tag, also for the _32 suite.
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&p.rtcp);
    p.ssrc.type = direction;
    p.key = key;
    p.window_size = 128;
    p.allow_repeat_tx = 0;
    p.next = nullptr;
}

SrtpSession::Result result_of(srtp_err_status_t s) {
    switch (s) {
        case srtp_err_status_ok: return SrtpSession::Result::kOk;
        case srtp_err_status_auth_fail: return SrtpSession::Result::kAuthFailed;
        case srtp_err_status_replay_fail:
        case srtp_err_status_replay_old: return SrtpSession::Result::kReplayed;
        default: return SrtpSession::Result::kInvalid;
    }
}

}  // namespace

struct SrtpSession::Impl {
    srtp_t inbound = nullptr;
    srtp_t outbound = nullptr;
    ~Impl() {
        if (inbound) srtp_dealloc(inbound);
        if (outbound) srtp_dealloc(outbound);
    }
};

SrtpSession::SrtpSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SrtpSession::~SrtpSession() = default;

std::unique_ptr<SrtpSession> SrtpSession::create(const SrtpParams& params, std::string* error) {
    auto fail = [error](const std::string& why) -> std::unique_ptr<SrtpSession> {
        if (error) *error = why;
        return nullptr;
    };
    if (const auto s = init_once(); s != srtp_err_status_ok) {
        return fail("libsrtp2 initialisation failed (status " + std::to_string(static_cast<int>(s)) + ")");
    }
    // Copies that libsrtp2 reads during srtp_create (it derives its session keys and keeps no pointer);
    // wiped right after.
    SrtpKeySalt in_key = params.remote_key, out_key = params.local_key;
    auto impl = std::make_unique<Impl>();
    srtp_policy_t in{}, out{};
    set_policy(in, params.suite, ssrc_any_inbound, in_key.data());
    set_policy(out, params.suite, ssrc_any_outbound, out_key.data());
    const srtp_err_status_t si = srtp_create(&impl->inbound, &in);
    const srtp_err_status_t so = si == srtp_err_status_ok ? srtp_create(&impl->outbound, &out) : si;
    explicit_bzero(in_key.data(), in_key.size());
    explicit_bzero(out_key.data(), out_key.size());
    if (si != srtp_err_status_ok || so != srtp_err_status_ok) {
        return fail("libsrtp2 refused the SRTP policy (status " + std::to_string(static_cast<int>(so)) + ")");
    }
    return std::unique_ptr<SrtpSession>(new SrtpSession(std::move(impl)));
}

bool SrtpSession::protect_rtp(uint8_t* buf, size_t& len, size_t capacity) {
    if (len < 12 || len + kSrtpMaxTrailer > capacity) return false;
    int n = static_cast<int>(len);
    if (srtp_protect(impl_->outbound, buf, &n) != srtp_err_status_ok) return false;
    len = static_cast<size_t>(n);
    return true;
}

bool SrtpSession::protect_rtcp(uint8_t* buf, size_t& len, size_t capacity) {
    if (len < 8 || len + kSrtpMaxTrailer > capacity) return false;
    int n = static_cast<int>(len);
    if (srtp_protect_rtcp(impl_->outbound, buf, &n) != srtp_err_status_ok) return false;
    len = static_cast<size_t>(n);
    return true;
}

SrtpSession::Result SrtpSession::unprotect_rtp(uint8_t* buf, size_t& len) {
    if (len < 12 || len > 65535) return Result::kInvalid;
    int n = static_cast<int>(len);
    const Result r = result_of(srtp_unprotect(impl_->inbound, buf, &n));
    if (r == Result::kOk) len = static_cast<size_t>(n);
    return r;
}

}  // namespace parley::media
