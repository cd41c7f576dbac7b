// The Boost.Beast transport: HTTP/1.1 over Boost.Asio with OpenSSL, and no threads of its own. Every call runs its
// network I/O on the calling thread, so a process needs no I/O pool and links no cpprestsdk (memory: this is the
// transport of the small singleton-elect binary). Same contract as makeTransport's cpprestsdk transport:
// - TLS verification always on (the config's CA, else the system CAs; the server's name or IP checked), unless the
//   kubeconfig says insecure-skip-tls-verify; SNI; client certificates; the bearer token read for every request.
// - send() reuses kept-alive connections (a few idle ones are kept) and, when a reused connection turns out dead
//   before any of the answer arrived, retries once on a new one; stream() opens a connection of its own.
// - request.timeout is a deadline for send() and the longest silence between chunks for stream(); `stop` cancels
//   within milliseconds. Errors are kNetwork, kTimeout or kCancelled values; nothing throws.
#pragma once

#include <memory>

#include "kube/client.h"
#include "kube/config.h"
#include "kube/transport.h"
#include "util/result.h"

namespace singleton::kube {

// Fails (kInvalidArgument) on a malformed server URL or unreadable TLS material. Of `options` only idle_connections
// applies (there is no I/O pool to size): set it to the number of threads that send at once.
util::Result<std::shared_ptr<Transport>> makeBeastTransport(const ClusterConfig& config, TransportOptions options = {});

}  // namespace singleton::kube
