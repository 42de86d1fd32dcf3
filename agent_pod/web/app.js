// voicefleet web caller: microphone -> agent over WebRTC, agent audio back, live transcript from the
// "events" data channel. No build step; state is mirrored on window.voicefleet for tests.
//
// The page follows live call migration (docs/migration.md): when its pod drains, it offers the call
// to another pod ("migration_offer"); the page opens a second peer connection to that pod while the
// microphone still talks to the old one, then switches the microphone and the speaker over, tells the
// old pod it followed and closes the old connection. The person on the call does nothing.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  status: "idle", sessionId: null, transcripts: [], agentTexts: [], errors: [], maxLevel: 0, ended: null,
  // Pods that served the call, in order ("" for one whose name is not known yet: the first pod's is
  // learnt from the migration_completed event of the pod the call moved to).
  pods: [],
  migrations: 0, // moves followed
  migrationsFailed: 0, // offers that could not be followed (the call stayed where it was)
  completedMigrations: [], // migration_completed events: {from_pod, gap_ms, replayed_ms}
};
window.voicefleet = state;
window.voicefleetStats = () => (pc ? pc.getStats() : Promise.resolve(new Map()));

// The connection the call goes through now, its events channel and the URL that hangs it up.
let pc = null, channel = null, location_ = null, micTrack = null;
let audioCtx = null, analyser = null, meterSource = null, meterTimer = null, following = false;
const remoteStreams = new Map(); // peer connection -> the agent's audio stream on it
const retired = new Set(); // connections the call moved away from, until they are closed
const agentLines = new Map(); // turn_id -> <li> of the agent's answer in progress
const RETIRE_MS = 2000; // the old connection is closed once its pod closed it, or after this long

function setStatus(status, text) {
  state.status = status;
  $("status").dataset.state = status;
  $("status").textContent = text;
}

function addLine(cls, text) {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text;
  $("log").appendChild(li);
  return li;
}

function onEvent(event, from) {
  if (from !== channel) {
    // A connection the call moved away from: its pod ends its side ("migrated"); the call goes on.
    if (event.type === "session_ended") return;
  }
  switch (event.type) {
    case "user_transcript":
      if (event.final && event.text) { state.transcripts.push(event.text); addLine("user", event.text); }
      break;
    case "agent_text": {
      let li = agentLines.get(event.turn_id);
      if (!li) { li = addLine("agent partial", ""); agentLines.set(event.turn_id, li); }
      li.textContent = event.final ? (event.played_text || event.text) : event.text;
      if (event.final) {
        li.classList.remove("partial");
        if (event.interrupted) li.textContent += " …";
        state.agentTexts.push(li.textContent);
        agentLines.delete(event.turn_id);
      }
      break;
    }
    case "error":
      state.errors.push(event.message);
      addLine("error", event.message);
      break;
    case "migration_offer":
      follow(event, from);
      break;
    case "migration_completed":
      state.completedMigrations.push(
        { from_pod: event.from_pod, gap_ms: event.gap_ms, replayed_ms: event.replayed_ms },
      );
      if (state.pods.length >= 2 && !state.pods[state.pods.length - 2]) {
        state.pods[state.pods.length - 2] = event.from_pod || "";
      }
      break;
    case "session_ended":
      state.ended = event.reason;
      hangup(false);
      break;
  }
}

function watchLevel(stream) {
  if (!audioCtx) {
    audioCtx = new AudioContext();
    analyser = audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    const samples = new Float32Array(analyser.fftSize);
    meterTimer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      let peak = 0;
      for (const s of samples) peak = Math.max(peak, Math.abs(s));
      state.maxLevel = Math.max(state.maxLevel, peak);
      $("level").value = peak;
    }, 50);
  }
  if (meterSource) meterSource.disconnect();
  meterSource = audioCtx.createMediaStreamSource(stream);
  meterSource.connect(analyser);
}

// The agent's audio of ``peer`` is played (and metered) while ``peer`` is the call's connection.
function playRemote(peer) {
  const stream = remoteStreams.get(peer);
  if (!stream || peer !== pc) return;
  $("remote").srcObject = stream;
  watchLevel(stream);
}

async function gatheringComplete(peer) {
  if (peer.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") resolve();
    });
  });
}

// A peer connection with an "events" channel; the agent's audio is played once it is the call's.
function newPeer() {
  const peer = new RTCPeerConnection({ iceServers: [] });
  const events = peer.createDataChannel("events");
  events.onmessage = (msg) => onEvent(JSON.parse(msg.data), events);
  peer.ontrack = (ev) => {
    remoteStreams.set(peer, ev.streams[0] || new MediaStream([ev.track]));
    playRemote(peer);
  };
  peer.onconnectionstatechange = () => {
    if (peer !== pc) return;
    if (peer.connectionState === "connected") setStatus("connected", "Connected: speak to the agent.");
    if (peer.connectionState === "failed") { setStatus("failed", "Connection failed."); hangup(false); }
  };
  return { peer, events };
}

// A fleet that requires credentials gives this page a short-lived key (minted with POST /v1/keys) in
// the URL fragment, "#key=...": browsers never send the fragment to a server, and the page drops it
// from the address bar at once and keeps it for this tab only.
function pageKey() {
  const fromUrl = new URLSearchParams(window.location.hash.slice(1)).get("key");
  if (fromUrl) {
    sessionStorage.setItem("voicefleet-key", fromUrl);
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  return fromUrl || sessionStorage.getItem("voicefleet-key");
}
const apiKey = pageKey();

// Offer ``peer`` to the pod at ``url``; the answer JSON once it is set. ``signal`` aborts the request.
// ``credential`` (the page key) opens a new session; a call that moves opens with its migration token.
async function negotiate(peer, url, extra, signal, credential) {
  await peer.setLocalDescription(await peer.createOffer());
  await gatheringComplete(peer);
  const headers = { "Content-Type": "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: JSON.stringify({ sdp: peer.localDescription.sdp, type: "offer", accepts_migration: true, ...extra }),
    signal,
  });
  const answer = await response.json();
  if (response.status !== 201) throw new Error(answer.error?.message || `signaling failed (${response.status})`);
  await peer.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  return answer;
}

function opened(events) {
  if (events.readyState === "open") return Promise.resolve();
  return new Promise((resolve, reject) => {
    events.addEventListener("open", resolve);
    events.addEventListener("close", () => reject(new Error("the new pod closed the channel")));
  });
}

function enableControls(on) {
  $("hangup").disabled = !on;
  $("text").disabled = !on;
  document.querySelector("#say button").disabled = !on;
}

async function call() {
  $("call").disabled = true;
  setStatus("connecting", "Connecting…");
  try {
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    micTrack = mic.getAudioTracks()[0];
    ({ peer: pc, events: channel } = newPeer());
    mic.getTracks().forEach((track) => pc.addTrack(track, mic));
    const answer = await negotiate(pc, "/v1/webrtc", {}, undefined, apiKey);
    location_ = new URL(answer.location, window.location.href).href;
    state.sessionId = answer.session_id;
    state.pods = [""];
    enableControls(true);
  } catch (err) {
    state.errors.push(String(err.message || err));
    setStatus("failed", `Could not call: ${err.message || err}`);
    hangup(false);
  }
}

// Follow a migration offer: open the call on the pod it names while the microphone still talks to the
// old one, then switch over; if the new pod cannot be reached, tell the old pod and stay.
async function follow(offer, from) {
  if (following || from !== channel || !pc) return;
  following = true;
  const old = pc, oldChannel = from;
  const { peer, events } = newPeer();
  // The microphone goes to the new pod only at the switch: until then the old pod hears it, and
  // replays to the new one what it held, so each word is heard once.
  const sender = peer.addTransceiver("audio", { direction: "sendrecv" }).sender;
  const abort = new AbortController();
  const within = Math.max(500, (offer.follow_within_ms || 10000) - 500);
  const timer = setTimeout(() => abort.abort(), within);
  const timedOut = new Promise((_, reject) => {
    abort.signal.addEventListener("abort", () => reject(new Error("the new pod did not answer in time")));
  });
  let answer;
  try {
    answer = await Promise.race([
      (async () => {
        const result = await negotiate(
          peer, offer.webrtc_url,
          { session_id: state.sessionId, migration_token: offer.migration_token }, abort.signal,
        );
        await opened(events);
        return result;
      })(),
      timedOut,
    ]);
  } catch (err) {
    peer.close();
    state.migrationsFailed += 1;
    state.errors.push(`could not follow the call to ${offer.pod}: ${err.message || err}`);
    if (oldChannel.readyState === "open") oldChannel.send(JSON.stringify({ type: "migration", followed: false }));
    return;
  } finally {
    clearTimeout(timer);
    following = false;
  }
  if (old !== pc) { // hung up meanwhile: end the call on the new pod too
    peer.close();
    fetch(new URL(answer.location, offer.webrtc_url).href, { method: "DELETE" }).catch(() => {});
    return;
  }
  // The switch: microphone, speaker and controls now belong to the new connection.
  await sender.replaceTrack(micTrack);
  old.getSenders().forEach((s) => s.replaceTrack(null));
  pc = peer;
  channel = events;
  location_ = new URL(answer.location, offer.webrtc_url).href; // hanging up now ends the call there
  state.sessionId = answer.session_id;
  state.migrations += 1;
  state.pods.push(offer.pod || "");
  playRemote(peer);
  if (peer.connectionState === "connected") setStatus("connected", "Connected: speak to the agent.");
  oldChannel.send(JSON.stringify({ type: "migration", followed: true }));
  retire(old, oldChannel);
}

// Close a connection the call moved away from once its pod has closed it (or soon anyway); no DELETE:
// the old pod ends its side itself.
function retire(peer, events) {
  retired.add(peer);
  remoteStreams.delete(peer);
  const close = () => {
    if (!retired.has(peer)) return;
    retired.delete(peer);
    peer.close();
  };
  events.addEventListener("close", close);
  peer.addEventListener("connectionstatechange", () => {
    if (["closed", "failed", "disconnected"].includes(peer.connectionState)) close();
  });
  setTimeout(close, RETIRE_MS);
}

async function hangup(notify = true) {
  if (notify && location_) {
    try { await fetch(location_, { method: "DELETE" }); } catch (_) { /* the pod may be gone already */ }
  }
  location_ = null;
  if (micTrack) micTrack.stop();
  micTrack = null;
  if (pc) {
    pc.getSenders().forEach((s) => s.track && s.track.stop());
    pc.close();
    remoteStreams.delete(pc);
    pc = null;
  }
  channel = null;
  retired.forEach((peer) => peer.close());
  retired.clear();
  if (meterTimer) clearInterval(meterTimer);
  if (audioCtx) audioCtx.close();
  meterTimer = audioCtx = analyser = meterSource = null;
  $("call").disabled = false;
  enableControls(false);
  if (state.status !== "failed") setStatus("ended", "Call ended.");
}

$("call").addEventListener("click", call);
$("hangup").addEventListener("click", () => hangup(true));
$("say").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (text && channel && channel.readyState === "open") {
    channel.send(JSON.stringify({ type: "text", text }));
    $("text").value = "";
  }
});
