/* generate: streams a completion from a .pq model through libparetoq.
 * Usage: generate MODEL.pq PROMPT [MAX_TOKENS] */
#include <stdio.h>
#include <stdlib.h>
#include "paretoq.h"

static int32_t print_text(const char *text, int32_t length, void *user_data) {
    (void)user_data;
    fwrite(text, 1, (size_t)length, stdout);
    fflush(stdout);
    return 0; /* keep going */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.pq PROMPT [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    int max_tokens = argc > 3 ? atoi(argv[3]) : 128;

    pq_model *model = NULL;
    pq_model_params mp = pq_model_default_params();
    if (pq_model_load(argv[1], &mp, &model) != PQ_OK) {
        fprintf(stderr, "error: %s\n", pq_last_error());
        return 1;
    }
    pq_context *ctx = NULL;
    pq_context_params cp = pq_context_default_params();
    if (pq_context_new(model, &cp, &ctx) != PQ_OK) {
        fprintf(stderr, "error: %s\n", pq_last_error());
        pq_model_free(model);
        return 1;
    }
    pq_sampler_params sp = pq_sampler_default_params();
    sp.seed = 42;
    pq_generation_stats stats = {.size = sizeof(pq_generation_stats)};
    int rc = 0;
    if (pq_generate(ctx, argv[2], -1, &sp, max_tokens, print_text, NULL, &stats) != PQ_OK) {
        fprintf(stderr, "\nerror: %s\n", pq_last_error());
        rc = 1;
    } else {
        fprintf(stderr, "\nprompt %d tokens, prefill %.1f tok/s | generated %d tokens, decode %.1f tok/s\n",
                stats.prompt_tokens, stats.prefill_tokens_per_second, stats.generated_tokens, stats.decode_tokens_per_second);
    }
    pq_context_free(ctx);
    pq_model_free(model);
    return rc;
}
