// Node preload (--require) for the benchmark: the original app hard-codes
// the IMDS address 169.254.169.254; send those requests to the emulator on
// 127.0.0.1:$IMDS_PORT instead, leaving the app's code untouched.
const http = require("http");
const port = Number(process.env.IMDS_PORT);
for (const name of ["request", "get"]) {
  const original = http[name];
  http[name] = function (options, ...rest) {
    if (options && typeof options === "object" && !(options instanceof URL)) {
      const host = options.hostname || options.host;
      if (host === "169.254.169.254") {
        options = { ...options, hostname: "127.0.0.1", host: "127.0.0.1", port };
      }
    }
    return original.call(this, options, ...rest);
  };
}
