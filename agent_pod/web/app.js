// voicefleet web caller: microphone -> agent over WebRTC, agent audio back, live transcript from the
// "events" data channel. No build step; state is mirrored on window.voicefleet for tests.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  status: "idle", sessionId: null, transcripts: [], agentTexts: [], errors: [], maxLevel: 0, ended: null,
};
window.voicefleet = state;
window.voicefleetStats = () => (pc ? pc.getStats() : Promise.resolve(new Map()));

let pc = null, channel = null, location_ = null, audioCtx = null, analyser = null, meterTimer = null;
const agentLines = new Map(); // turn_id -> <li> of the agent's answer in progress

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

function onEvent(event) {
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
    case "session_ended":
      state.ended = event.reason;
      hangup(false);
      break;
  }
}

function watchLevel(stream) {
  audioCtx = new AudioContext();
  analyser = audioCtx.createAnalyser();
  analyser.fftSize = 1024;
  audioCtx.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  meterTimer = setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s));
    state.maxLevel = Math.max(state.maxLevel, peak);
    $("level").value = peak;
  }, 50);
}

async function gatheringComplete(peer) {
  if (peer.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    peer.addEventListener("icegatheringstatechange", () => {
      if (peer.iceGatheringState === "complete") resolve();
    });
  });
}

async function call() {
  $("call").disabled = true;
  setStatus("connecting", "Connecting…");
  try {
    const mic = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    pc = new RTCPeerConnection({ iceServers: [] });
    mic.getTracks().forEach((track) => pc.addTrack(track, mic));
    channel = pc.createDataChannel("events");
    channel.onmessage = (msg) => onEvent(JSON.parse(msg.data));
    pc.ontrack = (ev) => {
      const stream = ev.streams[0] || new MediaStream([ev.track]);
      $("remote").srcObject = stream;
      watchLevel(stream);
    };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "connected") setStatus("connected", "Connected: speak to the agent.");
      if (pc && pc.connectionState === "failed") { setStatus("failed", "Connection failed."); hangup(false); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc);
    const response = await fetch("/v1/webrtc", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }),
    });
    const answer = await response.json();
    if (response.status !== 201) throw new Error(answer.message || `signaling failed (${response.status})`);
    location_ = answer.location;
    state.sessionId = answer.session_id;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    $("hangup").disabled = false;
    $("text").disabled = false;
    document.querySelector("#say button").disabled = false;
  } catch (err) {
    state.errors.push(String(err.message || err));
    setStatus("failed", `Could not call: ${err.message || err}`);
    hangup(false);
  }
}

async function hangup(notify = true) {
  if (notify && location_) {
    try { await fetch(location_, { method: "DELETE" }); } catch (_) { /* the pod may be gone already */ }
  }
  location_ = null;
  if (pc) {
    pc.getSenders().forEach((s) => s.track && s.track.stop());
    pc.close();
    pc = null;
  }
  if (meterTimer) clearInterval(meterTimer);
  if (audioCtx) audioCtx.close();
  meterTimer = audioCtx = null;
  $("call").disabled = false;
  $("hangup").disabled = true;
  $("text").disabled = true;
  document.querySelector("#say button").disabled = true;
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
