/* The ABI's struct sizes and field offsets, pinned at compile time. tests/ParetoQ.Runtime.Tests/AbiTests.cs pins the
 * same numbers for the C# definitions (src/ParetoQ.Native/Abi.cs), so the two sides cannot drift apart silently. */
#include <stddef.h>
#include <stdio.h>
#include "paretoq.h"

#define PIN(expr, value) _Static_assert((expr) == (value), #expr " must be " #value)

PIN(sizeof(pq_token), 4);
PIN(sizeof(pq_status), 4);
PIN(sizeof(pq_model_params), 8);
PIN(offsetof(pq_model_params, verify_checksums), 4);
PIN(sizeof(pq_context_params), 20);
PIN(offsetof(pq_context_params, threads), 4);
PIN(offsetof(pq_context_params, context_length), 8);
PIN(offsetof(pq_context_params, kv_type), 12);
PIN(offsetof(pq_context_params, exact), 16);
PIN(sizeof(pq_sampler_params), 40);
PIN(offsetof(pq_sampler_params, temperature), 4);
PIN(offsetof(pq_sampler_params, top_k), 8);
PIN(offsetof(pq_sampler_params, top_p), 12);
PIN(offsetof(pq_sampler_params, min_p), 16);
PIN(offsetof(pq_sampler_params, repeat_penalty), 20);
PIN(offsetof(pq_sampler_params, repeat_last_n), 24);
PIN(offsetof(pq_sampler_params, seed), 32);
PIN(sizeof(pq_model_info), 96);
PIN(offsetof(pq_model_info, vocab_size), 4);
PIN(offsetof(pq_model_info, max_context), 8);
PIN(offsetof(pq_model_info, layers), 12);
PIN(offsetof(pq_model_info, hidden_size), 16);
PIN(offsetof(pq_model_info, bos_id), 20);
PIN(offsetof(pq_model_info, eos_id), 24);
PIN(offsetof(pq_model_info, file_bytes), 32);
PIN(offsetof(pq_model_info, parameters), 40);
PIN(offsetof(pq_model_info, architecture), 48);
PIN(offsetof(pq_model_info, bits), 80);
PIN(sizeof(pq_generation_stats), 32);
PIN(offsetof(pq_generation_stats, prompt_tokens), 4);
PIN(offsetof(pq_generation_stats, generated_tokens), 8);
PIN(offsetof(pq_generation_stats, stop_reason), 12);
PIN(offsetof(pq_generation_stats, prefill_tokens_per_second), 16);
PIN(offsetof(pq_generation_stats, decode_tokens_per_second), 24);

int main(void) {
    /* The library's defaults carry the sizes the header declares. */
    pq_model_params mp = pq_model_default_params();
    pq_context_params cp = pq_context_default_params();
    pq_sampler_params sp = pq_sampler_default_params();
    if (pq_abi_version() != PQ_ABI_VERSION || mp.size != sizeof mp || cp.size != sizeof cp || sp.size != sizeof sp) {
        fprintf(stderr, "library abi %u, header %d; sizes %u/%zu %u/%zu %u/%zu\n", pq_abi_version(), PQ_ABI_VERSION,
                mp.size, sizeof mp, cp.size, sizeof cp, sp.size, sizeof sp);
        return 1;
    }
    printf("abi %u: struct sizes and offsets agree (%s)\n", pq_abi_version(), pq_version_string());
    return 0;
}
