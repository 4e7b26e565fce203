// The ghost material: a what-if scenario's machines, queues and work items
// drawn over the solid live plant. Translucent, unlit, with a fresnel rim
// from the view direction so the outline reads at any angle; the body takes
// the simulated state's colour, and a machine the scenario has down pulses.
// Composed by Bevy's shader composer: the imports below resolve against
// bevy_pbr's modules (checked by the `ghost_shader_composes` test).

#import bevy_pbr::{
    forward_io::VertexOutput,
    mesh_view_bindings::{view, globals},
}

struct GhostParams {
    // The scenario's colour; alpha is the body's translucency.
    tint: vec4<f32>,
    // The simulated state's colour.
    state_colour: vec4<f32>,
    // 1: pulse (down), 0: steady.
    pulse: f32,
    // Rim sharpness: higher is a thinner outline.
    rim_power: f32,
    // How much of the body is the state's colour (0..1) vs the tint.
    state_mix: f32,
    // Brightness of the whole ghost (dimmed when another view is focused).
    strength: f32,
}

@group(#{MATERIAL_BIND_GROUP}) @binding(0) var<uniform> ghost: GhostParams;

const TAU: f32 = 6.28318530718;
// Pulses per second of a down machine.
const PULSE_HZ: f32 = 1.2;

@fragment
fn fragment(in: VertexOutput) -> @location(0) vec4<f32> {
    let n = normalize(in.world_normal);
    let to_eye = normalize(view.world_position.xyz - in.world_position.xyz);
    // 0 facing the eye, 1 at grazing angles: the rim.
    let facing = clamp(abs(dot(n, to_eye)), 0.0, 1.0);
    let rim = pow(1.0 - facing, ghost.rim_power);

    let beat = 0.5 + 0.5 * sin(globals.time * TAU * PULSE_HZ);
    let pulse = mix(1.0, 0.25 + 0.75 * beat, clamp(ghost.pulse, 0.0, 1.0));

    let body = mix(ghost.tint.rgb, ghost.state_colour.rgb, clamp(ghost.state_mix, 0.0, 1.0));
    let colour = (body * (0.45 + 0.55 * pulse) + ghost.tint.rgb * rim) * ghost.strength;
    let alpha = clamp((ghost.tint.a * pulse + 0.7 * rim) * ghost.strength, 0.0, 0.92);
    return vec4<f32>(colour, alpha);
}
