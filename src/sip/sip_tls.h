// sip_tls.h — SIP over TLS helpers used by sip_stack.cpp (internal to src/sip; docs/tls.md).
//
// sofia-sip's TLS transport reads its files from one directory (NUTAG_CERTIFICATE_DIR): agent.pem (our
// certificate followed by its private key) and cafile.pem (the CAs that verify peers). prepare_dir() builds
// it from the configuration.
//
// sofia-sip reports a refused certificate only in its own log: it closes the connection and the REGISTER
// waiting for it is never told why. note_diagnostic() reads every sofia log line and queues the reasons
// (at most 16, none older than 40 s); take_diagnostic() hands one to the line that failed. Thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "common/config.h"

namespace parley::sip::tls {

// Reads one complete sofia-sip log line; queues a reason when it is one of tport_tls.c's:
//   "  err 20:unable to get local issuer certificate" (after "-Error with certificate at depth: 0" and
//     "  subject  = /CN=...")           -> "certificate verify failed: unable to ... (depth 0, subject /CN=...)"
//   "...: Peer Subject Mismatch (host)" -> "certificate does not name the host host (...)"   [names host]
//   "tls_read: SSL_read: ...:tlsv1 alert unknown ca" -> "the peer ended the connection: tlsv1 alert ..."
//   "...: TLS setup failed (...)"       -> "handshake failed (...)"
void note_diagnostic(const std::string& msg);

// A queued reason that may concern `host` (one naming that host, or naming none), noted at or after
// `since`, removed from the queue; "" when none. `newest`: the latest such (for a failure sofia reports at
// once, right after the connection broke), else the oldest (failures found later, in connection order).
std::string take_diagnostic(const std::string& host, std::chrono::steady_clock::time_point since, bool newest);

// "sips:..." (any case) or a ";transport=tls" parameter.
bool uri_is_tls(const std::string& uri);
// A ";transport=" parameter naming anything but tls (udp, tcp, ...).
bool uri_names_clear_transport(const std::string& uri);
// Adds ";transport=tls" to a sip: URI that is not TLS yet: before "?headers", inside "<...>" of a
// name-addr; a TLS URI comes back as it is.
std::string force_tls(const std::string& uri);
// The To header for a target: "<uri>" unless it has its brackets already (outside them, URI parameters
// would be read as header parameters, and NUA's Request-URI, taken from To, would lose ;transport=tls).
std::string to_header(const std::string& uri);

// Builds sofia-sip's certificate directory in tls.dir (created 0700, files 0600): agent.pem from
// tls.cert + tls.key, or a P-256 key and self-signed certificate (CN=parley-self-signed, one year, logged
// with its SHA-256) when tls.cert is empty; cafile.pem = a copy of tls.ca_file. Returns the directory, or
// "" with *error naming the key and the file ("sip.tls_cert: /x.pem holds no PEM certificate").
std::string prepare_dir(const SipTlsConfig& tls, std::string* error);

}  // namespace parley::sip::tls
