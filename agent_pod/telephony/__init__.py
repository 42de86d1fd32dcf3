"""Phone calls: carriers' Media Streams WebSockets, their webhooks, and the G.711 codec they speak."""
