/**
 * Preloaded (`node --import`) into the seed example's process: plays DNS and routing for one host name, so
 * `https://otel.example.com` (the example's endpoint, unchanged) reaches the test's local OTLP receiver.
 * `LEAP0_TEST_ROUTE=otel.example.com=127.0.0.1:PORT`. TLS is real: the receiver's certificate is for that
 * name and the process trusts it through NODE_EXTRA_CA_CERTS.
 */

import tls from "node:tls";

const [host, target] = (process.env.LEAP0_TEST_ROUTE ?? "").split("=");
if (host && target) {
  const [address, port] = target.split(":");
  const connect = tls.connect;
  (tls as { connect: unknown }).connect = function (this: unknown, ...args: unknown[]): tls.TLSSocket {
    const options = args[0];
    if (options && typeof options === "object" && (options as tls.ConnectionOptions).host === host) {
      const routed = { ...(options as tls.ConnectionOptions), host: address, port: Number(port), servername: host };
      return (connect as (...a: unknown[]) => tls.TLSSocket).call(this, routed, ...args.slice(1));
    }
    return (connect as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
  };
}
