//! The in-agent halves of the probes: small programs run with `docker exec` inside the agent
//! container. Each prints observation lines `obs <label> <CODE> [count]` and a last `done`
//! line, so a probe that stopped halfway is never read as a pass (see [`super::probes`]).
//!
//! They use only what the provider images carry (`sh`, `bash`, `perl`, `node`, `curl`).

/// Shell helpers every probe script starts with.
///
/// `bb_try label cmd…` runs a command and names the refusal from its exit status and message;
/// `bb_http label curl-args…` makes one request through the agent's proxy settings and names
/// the status and egress's refusal layer (`x-bot-bottle-refusal: layer=…`).
pub(crate) const PRELUDE: &str = r#"
bb_code() {
  if [ "$1" = 0 ]; then echo SUCCEEDED; return; fi
  case "$2" in
    *"Operation not permitted"*|*"must be superuser"*) echo EPERM ;;
    *"Permission denied"*) echo EACCES ;;
    *"Read-only file system"*) echo EROFS ;;
    *"Network is unreachable"*) echo ENETUNREACH ;;
    *"No route to host"*) echo EHOSTUNREACH ;;
    *"Function not implemented"*) echo ENOSYS ;;
    *"Directory nonexistent"*|*"No such file"*) echo ENOENT ;;
    *"Could not resolve host"*) echo NO-DNS ;;
    *"Authentication failure"*) echo AUTH-FAILED ;;
    *) echo "OTHER:$(printf %s "$2" | tr -c 'A-Za-z0-9.:_-' _ | cut -c1-60)" ;;
  esac
}
bb_try() {
  bb_label=$1; shift
  bb_out=$("$@" 2>&1 </dev/null); bb_rc=$?
  echo "obs $bb_label $(bb_code "$bb_rc" "$bb_out")"
}
bb_http() {
  bb_label=$1; shift
  bb_h=$(curl -sS -o /dev/null -D - --max-time 20 "$@" 2>/dev/null | tr -d '\r')
  bb_st=$(printf '%s\n' "$bb_h" | awk '/^HTTP\//{s=$2} END{print s}')
  bb_ly=$(printf '%s\n' "$bb_h" | sed -n 's/^[Xx]-[Bb]ot-[Bb]ottle-[Rr]efusal: layer=\([a-z-]*\);.*/\1/p' | tail -n 1)
  echo "obs $bb_label ${bb_st:-none}:${bb_ly:-none}"
}
"#;

/// TCP to every address and port given, without a route lookup shortcut: one non-blocking
/// `connect` per port. No route gives `ENETUNREACH` at once (`EHOSTUNREACH` under gVisor's
/// interface-less stack); a route gives `EINPROGRESS`
/// (reported as `ROUTE`), and an address's scan stops after 20 of those (the verdict is
/// already known). Each address is scanned by its own process, read back in order.
/// Arguments: `<ports spec: 1-65535,8080> <address>…`.
pub(crate) const TCP_SCAN_PL: &str = r#"
use strict; use Socket qw(:all); use Fcntl;
my ($spec, @hosts) = @ARGV; my @ports;
for my $part (split /,/, $spec) { my ($a, $b) = split /-/, $part; push @ports, ($a .. ($b // $a)); }
sub errno_name { for my $k (sort keys %!) { return $k if $!{$k} } return "ERRNO" . ($! + 0) }
sub scan { my ($h) = @_; my (%n, $bad, $left);
  my $v6 = $h =~ /:/; my $addr = inet_pton($v6 ? AF_INET6 : AF_INET, $h);
  return "obs tcp:$h BADADDR\n" unless defined $addr;
  my $s;
  for my $i (0 .. $#ports) { my $p = $ports[$i];
    unless ($s) {
      socket($s, $v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0) or return "obs tcp:$h " . errno_name() . "\n";
      fcntl($s, F_SETFL, O_NONBLOCK);
    }
    my $sa = $v6 ? pack_sockaddr_in6($p, $addr) : pack_sockaddr_in($p, $addr);
    my $c = connect($s, $sa) ? 'CONNECTED'
      : $!{ENETUNREACH} ? 'ENETUNREACH' : $!{EINPROGRESS} ? 'ROUTE' : errno_name();
    # A connect refused before any packet leaves the socket unconnected, so the next port
    # reuses it: one syscall per port (gVisor makes each one costly).
    if ($c !~ /^(ENETUNREACH|EHOSTUNREACH|EADDRNOTAVAIL)$/) { close $s; undef $s; }
    $n{$c}++;
    if (!$s && ++$bad >= 20) { $left = @ports - $i - 1; last; }
  }
  close $s if $s;
  my $out = join '', map { "obs tcp:$h $_ $n{$_}\n" } sort keys %n;
  $out .= "obs tcp:$h-not-scanned STOPPED $left\n" if $left;
  return $out;
}
# One process per address: under gVisor the scan is bound by syscall cost, not the network.
my @kids;
for my $h (@hosts) {
  pipe(my $r, my $w) or die "pipe: $!";
  my $pid = fork() // die "fork: $!";
  if (!$pid) { close $r; print $w scan($h); close $w; exit 0; }
  close $w; push @kids, [$pid, $r];
}
for my $k (@kids) { my $fh = $k->[1]; local $/; my $out = <$fh>; print $out // ''; waitpid($k->[0], 0); }
print "done\n";
"#;

/// One real HTTP request per address and port (node): the answer, or the error code.
/// Arguments: `<port> <address>…`.
pub(crate) const TCP_REQUEST_JS: &str = r#"
const net=require('net');const [port,...hosts]=process.argv.slice(1);
function one(h){return new Promise(res=>{let done=false,s;const fin=c=>{if(done)return;done=true;if(s)s.destroy();res(c)};
try{s=net.connect({host:h,port:+port})}catch(e){return fin(e.code||'THROWN')}
s.setTimeout(3000,()=>fin('TIMEOUT'));s.on('error',e=>fin(e.code||'ERROR'));
s.on('connect',()=>{s.on('data',()=>fin('ANSWERED'));s.on('end',()=>fin('CLOSED-BY-PEER'));
s.write('GET / HTTP/1.1\r\nHost: '+h+'\r\nConnection: close\r\n\r\n')})})}
(async()=>{for(const h of hosts){console.log('obs http:'+h+':'+port+' '+await one(h))}console.log('done')})();
"#;

/// A DNS query over UDP to each address (node). A loopback address where nothing listens
/// answers with an ICMP port-unreachable (`NO-LISTENER`); a packet that leaves without an
/// answer is `SENT-NO-ANSWER`. Arguments: `<query name> <address>…`.
pub(crate) const UDP_DNS_JS: &str = r#"
const dgram=require('dgram'),net=require('net');const [name,...hosts]=process.argv.slice(1);
function q(n){const h=Buffer.from([0x12,0x34,1,0,0,1,0,0,0,0,0,0]);
const parts=n.split('.').filter(l=>l).map(l=>Buffer.concat([Buffer.from([l.length]),Buffer.from(l)]));
return Buffer.concat([h,...parts,Buffer.from([0,0,1,0,1])])}
function one(h){return new Promise(res=>{let done=false;const s=dgram.createSocket(net.isIPv6(h)?'udp6':'udp4');
const fin=c=>{if(done)return;done=true;try{s.close()}catch(e){}res(c)};
s.on('error',e=>fin(e.code==='ECONNREFUSED'&&/^127\./.test(h)?'NO-LISTENER':(e.code||'ERROR')));
s.on('message',()=>fin('ANSWERED'));
try{s.connect(53,h,e=>{if(e)return fin(e.code||'ERROR');s.send(q(name),e=>{if(e)fin(e.code||'ERROR');else setTimeout(()=>fin('SENT-NO-ANSWER'),2000)})})}catch(e){fin(e.code||'THROWN')}})}
(async()=>{for(const h of hosts){console.log('obs dns:'+h+' '+await one(h))}console.log('done')})();
"#;

/// A TLS handshake through the proxy's CONNECT tunnel with an SNI other than the CONNECT
/// target (node). Arguments: `<connect host> <sni>`.
pub(crate) const SNI_MISMATCH_JS: &str = r#"
const http=require('http'),tls=require('tls');const [host,sni]=process.argv.slice(1);
const u=new URL(process.env.HTTPS_PROXY||process.env.https_proxy||'http://127.0.0.1:9099');
const fin=c=>{console.log('obs sni:'+sni+'@'+host+' '+c);console.log('done');process.exit(0)};
setTimeout(()=>fin('TIMEOUT'),20000);
const r=http.request({host:u.hostname,port:u.port,method:'CONNECT',path:host+':443'});
r.on('error',e=>fin('PROXY-'+(e.code||'ERROR')));
r.on('connect',(res,sock)=>{if(res.statusCode!==200)return fin(res.statusCode+':'+((res.headers['x-bot-bottle-refusal']||'').match(/layer=([a-z-]+)/)||[,'none'])[1]);
const t=tls.connect({socket:sock,servername:sni,rejectUnauthorized:false},()=>{
t.write('GET / HTTP/1.1\r\nHost: '+sni+'\r\nConnection: close\r\n\r\n');let b='';
t.on('data',d=>b+=d);t.on('end',()=>{const m=b.match(/^HTTP\/1\.[01] (\d+)/);const l=b.match(/x-bot-bottle-refusal: layer=([a-z-]+)/i);
fin(m?m[1]+':'+(l?l[1]:'none'):'TLS-CLOSED')})});
t.on('error',e=>fin('TLS-REFUSED'))});r.end();
"#;

/// `bb_raw <label> <port> <request as a printf format>`: raw request bytes to a loopback port
/// (bash `/dev/tcp`); prints the status line that came back as `<status>:<layer>`,
/// `RESPONSES-<n>` when more than one did, or how the connection ended without one: `CLOSED`
/// (also when the write found it already closed), `RESET`, `ECONNREFUSED`.
pub(crate) const RAW_HTTP_SH: &str = r#"
bb_raw() {
  bb_label=$1; bb_port=$2; bb_req=$3
  bb_resp=$(bash -c 'exec 3<>/dev/tcp/127.0.0.1/'"$bb_port"' || exit 9; printf "$1" >&3; timeout 15 cat <&3' bb-raw "$bb_req" 2>&1 | tr -d '\r')
  bb_n=$(printf '%s\n' "$bb_resp" | grep -c '^HTTP/1\.[01] [0-9]')
  if [ "$bb_n" = 0 ]; then
    case "$bb_resp" in *"Connection refused"*) echo "obs $bb_label ECONNREFUSED" ;; *"Connection reset by peer"*) echo "obs $bb_label RESET" ;; "") echo "obs $bb_label CLOSED" ;; *"Broken pipe"*) echo "obs $bb_label CLOSED" ;; *) echo "obs $bb_label NO-HTTP-ANSWER:$(printf %s "$bb_resp" | tr -c 'A-Za-z0-9.:_-' _ | cut -c1-50)" ;; esac
    return
  fi
  bb_st=$(printf '%s\n' "$bb_resp" | awk '/^HTTP\/1\.[01] [0-9]/{print $2; exit}')
  bb_ly=$(printf '%s\n' "$bb_resp" | sed -n 's/^[Xx]-[Bb]ot-[Bb]ottle-[Rr]efusal: layer=\([a-z-]*\);.*/\1/p' | head -n 1)
  if [ "$bb_n" -gt 1 ]; then echo "obs $bb_label RESPONSES-$bb_n"; else echo "obs $bb_label $bb_st:${bb_ly:-none}"; fi
}
"#;

/// JavaScript helpers the HTTP probes start with (node): `bbReader(stream)` returns a function
/// that resolves the next HTTP/1.1 response on the stream (`{status, layer, body}`, `layer`
/// from egress's refusal header or `none`; `{err}` when the stream ended or failed first), and
/// `bbTunnel(host)` a TLS stream through a CONNECT tunnel of the agent's proxy, or rejects with
/// the CONNECT answer's `<status>:<layer>` or the error.
pub(crate) const HTTP1_JS: &str = r#"
const net=require('net'),http=require('http'),tls=require('tls'),fs=require('fs');
const bbProxy=new URL(process.env.HTTPS_PROXY||process.env.https_proxy||'http://127.0.0.1:9099');
const bbPort=+bbProxy.port||80;
function bbReader(sock){
  let buf=Buffer.alloc(0),done=false,err='',wake=null;
  const poke=()=>{if(wake){const w=wake;wake=null;w()}};
  sock.on('data',d=>{buf=Buffer.concat([buf,d]);poke()});
  sock.on('end',()=>{done=true;poke()});sock.on('close',()=>{done=true;poke()});
  sock.on('error',e=>{err=e.code||'ERROR';done=true;poke()});
  const need=async f=>{for(;;){const v=f();if(v!==null)return v;if(done)return null;await new Promise(r=>{wake=r})}};
  const line=()=>need(()=>{const i=buf.indexOf('\r\n');return i<0?null:i});
  const fail=()=>({err:err?'ERR-'+err:(buf.length?'PARTIAL':'CLOSED')});
  return async()=>{
    const he=await need(()=>{const i=buf.indexOf('\r\n\r\n');return i<0?null:i});
    if(he===null)return fail();
    const head=buf.slice(0,he).toString('latin1');buf=buf.slice(he+4);
    const m=head.match(/^HTTP\/1\.[01] (\d{3})/);if(!m)return {err:'NOT-HTTP'};
    const status=+m[1];
    const hdr=n=>{const r=head.match(new RegExp('\r\n'+n+':[ \t]*([^\r\n]*)','i'));return r?r[1]:null};
    const lm=(hdr('x-bot-bottle-refusal')||'').match(/layer=([a-z-]+)/);
    const cl=hdr('content-length'),te=hdr('transfer-encoding');let body=Buffer.alloc(0);
    if(status<200||status===204||status===304){}
    else if(te&&/chunked/i.test(te)){for(;;){
      const i=await line();if(i===null)return fail();
      const size=parseInt(buf.slice(0,i).toString(),16);buf=buf.slice(i+2);
      if(!(size>=0))return {err:'BAD-CHUNK'};
      if(size===0){for(;;){const j=await line();if(j===null)return fail();buf=buf.slice(j+2);if(j===0)break}break}
      if(await need(()=>buf.length>=size+2?true:null)===null)return fail();
      body=Buffer.concat([body,buf.slice(0,size)]);buf=buf.slice(size+2)}}
    else if(cl!==null){const n=+cl;if(await need(()=>buf.length>=n?true:null)===null)return fail();body=buf.slice(0,n);buf=buf.slice(n)}
    else{await need(()=>null);body=buf;buf=Buffer.alloc(0)}
    return {status,layer:lm?lm[1]:'none',body:body.toString('latin1')}}}
function bbTunnel(host){return new Promise((res,rej)=>{
  const r=http.request({host:bbProxy.hostname,port:bbPort,method:'CONNECT',path:host+':443',agent:false});
  r.setTimeout(20000,()=>{r.destroy();rej('TIMEOUT')});
  r.on('error',e=>rej('ERR-'+(e.code||'ERROR')));
  r.on('connect',(resp,sock)=>{r.setTimeout(0);
    if(resp.statusCode!==200){const l=(resp.headers['x-bot-bottle-refusal']||'').match(/layer=([a-z-]+)/);sock.destroy();return rej(resp.statusCode+':'+(l?l[1]:'none'))}
    const t=tls.connect({socket:sock,servername:host,rejectUnauthorized:false},()=>res(t));
    t.setTimeout(20000,()=>{t.destroy();rej('TLS-TIMEOUT')});t.on('secureConnect',()=>t.setTimeout(0));
    t.on('error',e=>rej('TLS-'+(e.code||'ERROR')))});
  r.end()})}
const bbWithin=(p,ms)=>Promise.race([p,new Promise(r=>setTimeout(()=>r({err:'TIMEOUT'}),ms))]);
setTimeout(()=>{console.log('obs watchdog TIMEOUT');console.log('done');process.exit(0)},120000).unref();
"#;

/// New hosts on a kept-alive connection (node, after [`HTTP1_JS`]): on each connection a first
/// request to a routed host, which egress lets through (answered by the upstream, or by
/// egress's `upstream` layer when nothing listens there), then a second request on the same
/// connection naming another host: through a CONNECT tunnel whose TLS SNI named the first
/// host (Host of an unrouted host, of another routed host, an absolute-form target), and on
/// the proxy listener (an unrouted target, the routed target with another Host). Paths are
/// `/bb-n5/first` and `/bb-n5/second`, so an upstream's log shows what was forwarded. The
/// observations are printed at the end, all together.
/// Arguments: `<routed host> <other routed host> <unrouted host>`.
pub(crate) const KEEPALIVE_JS: &str = r#"
const [route,other,unrouted]=process.argv.slice(1);
const seen=[],obs=(l,c)=>seen.push('obs n5:'+l+' '+c);
const code=r=>r.err?r.err:r.status+':'+r.layer;
const allowed=r=>!r.err&&(r.layer==='none'||r.layer==='upstream');
async function kept(label,sock,first,second){
  const next=bbReader(sock);sock.write(first);
  const a=await bbWithin(next(),20000);obs(label+':first',allowed(a)?'FIRST-ALLOWED':'FIRST-'+code(a));
  if(allowed(a)){sock.write(second);obs(label+':second',code(await bbWithin(next(),20000)))}
  sock.destroy()}
async function tunnel(label,second){
  let t;try{t=await bbTunnel(route)}catch(c){return obs(label+':connect','CONNECT-'+c)}
  await kept(label,t,'GET /bb-n5/first HTTP/1.1\r\nHost: '+route+'\r\n\r\n',second)}
async function proxy(label,second){
  const s=net.connect({host:bbProxy.hostname,port:bbPort});
  await kept(label,s,'GET http://'+other+'/bb-n5/first HTTP/1.1\r\nHost: '+other+'\r\n\r\n',second)}
(async()=>{
  await tunnel('tunnel-unrouted-host','GET /bb-n5/second HTTP/1.1\r\nHost: '+unrouted+'\r\n\r\n');
  await tunnel('tunnel-routed-host','GET /bb-n5/second HTTP/1.1\r\nHost: '+other+'\r\n\r\n');
  await tunnel('tunnel-absolute-form','GET https://'+unrouted+'/bb-n5/second HTTP/1.1\r\nHost: '+unrouted+'\r\n\r\n');
  await proxy('proxy-unrouted-target','GET http://'+unrouted+'/bb-n5/second HTTP/1.1\r\nHost: '+unrouted+'\r\n\r\n');
  await proxy('proxy-host-header','GET http://'+other+'/bb-n5/second HTTP/1.1\r\nHost: '+unrouted+'\r\n\r\n');
  // Printed only once every case ran: a script that dies half-way shows nothing, so fails.
  console.log(seen.join('\n'));console.log('done');process.exit(0)})();
"#;

/// Requests fired without pause while the host swaps the routes (node, after [`HTTP1_JS`]):
/// three workers, each a fresh tunnel per request, to the credential route (`auth`), the plain
/// route outside and inside the second policy's path prefix (`plain-old`, `plain-new`) and an
/// unrouted host, until the stop file appears (at most 60 s). Each answer is named
/// `<kind>=<code>`: `PASSED` when egress let it through (`-CRED`/`-NOCRED` when an echoing
/// upstream shows whether the credential was injected), else the refusal's `<status>:<layer>`
/// or the error. Then the credential route is asked until it passes again (the bottle's own
/// routes are back), and `policies-seen` says whether both policies answered during the run.
/// Arguments: `<credential route> <plain route> <unrouted host> <new prefix> <stop file>`.
pub(crate) const RELOAD_JS: &str = r#"
const [auth,plain,unrouted,prefix,stop]=process.argv.slice(1);
const kinds=[['auth',auth,'/bb-n15/old'],['plain-old',plain,'/bb-n15/old'],['plain-new',plain,prefix+'x'],['unrouted',unrouted,'/bb-n15/x']];
async function one(host,path){
  let t;try{t=await bbTunnel(host)}catch(c){return /^\d+:upstream$/.test(c)?'PASSED':/^\d+:/.test(c)?c:'CONNECT-'+c}
  const next=bbReader(t);t.write('GET '+path+' HTTP/1.1\r\nHost: '+host+'\r\nConnection: close\r\n\r\n');
  const r=await bbWithin(next(),20000);t.destroy();
  if(r.err)return r.err;
  if(r.layer==='none'||r.layer==='upstream')return 'PASSED'+(/auth=Bearer \*{4}/.test(r.body)?'-CRED':/auth=none/.test(r.body)?'-NOCRED':'');
  return r.status+':'+r.layer}
const counts={},t0=Date.now();
const stopped=()=>fs.existsSync(stop)||Date.now()-t0>60000;
async function worker(){while(!stopped())for(const [k,h,p] of kinds){const c=k+'='+(await one(h,p));counts[c]=(counts[c]||0)+1}}
(async()=>{
  await Promise.all([worker(),worker(),worker()]);
  let fin='NONE';
  for(let i=0;i<50;i++){fin=await one(auth,'/bb-n15/final');if(fin.startsWith('PASSED'))break;await new Promise(r=>setTimeout(r,200))}
  for(const [c,n] of Object.entries(counts))console.log('obs n15:'+c.split('=')[0]+' '+c+' '+n);
  console.log('obs n15:after-reload final='+fin);
  const old=Object.keys(counts).some(c=>c.startsWith('auth=PASSED')),neu='auth=403:allowlist' in counts;
  console.log('obs n15:policies-seen '+(old&&neu?'BOTH':old?'OLD-ONLY':neu?'NEW-ONLY':'NONE'));
  console.log('done');process.exit(0)})();
"#;
