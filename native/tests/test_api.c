/* Every libparetoq function, its error paths, and concurrent use. Usage: test_api MODEL.pq
 * The model must be a byte-level-vocabulary model (tools/ParetoQ.ModelGen writes one): "Hello" is then BOS + 5 byte tokens. */
#define _DEFAULT_SOURCE /* mkstemp, usleep, clock_gettime */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "paretoq.h"

static int failures = 0;
#define CHECK(cond)                                                                                     \
    do {                                                                                                \
        if (!(cond)) {                                                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, #cond,    \
                    pq_last_error());                                                                   \
            failures++;                                                                                 \
        }                                                                                               \
    } while (0)
#define CHECK_ERROR(expr, status, fragment)                                                             \
    do {                                                                                                \
        int32_t got_ = (int32_t)(expr);                                                                 \
        if (got_ != (int32_t)(status) || !strstr(pq_last_error(), fragment)) {                          \
            fprintf(stderr, "%s:%d: %s gave %d (%s), expected %d with '%s'\n", __FILE__, __LINE__,      \
                    #expr, got_, pq_last_error(), (int)(status), fragment);                             \
            failures++;                                                                                 \
        }                                                                                               \
    } while (0)

static const char *model_path;

static pq_model *load(void) {
    pq_model *model = NULL;
    pq_model_params mp = pq_model_default_params();
    CHECK(pq_model_load(model_path, &mp, &model) == PQ_OK && model != NULL);
    return model;
}

static pq_context *new_context(pq_model *model, int context_length) {
    pq_context *ctx = NULL;
    pq_context_params cp = pq_context_default_params();
    cp.threads = 1;
    cp.context_length = context_length;
    CHECK(pq_context_new(model, &cp, &ctx) == PQ_OK && ctx != NULL);
    return ctx;
}

static void write_file(const char *path, const unsigned char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(*n);
    if (fread(data, 1, *n, f) != *n) { free(data); data = NULL; }
    fclose(f);
    return data;
}

static void test_version_and_loading(void) {
    CHECK(pq_abi_version() == PQ_ABI_VERSION);
    CHECK(strstr(pq_version_string(), "abi 1") != NULL);

    pq_model *model = (pq_model *)0x1;
    pq_model_params mp = pq_model_default_params();
    CHECK_ERROR(pq_model_load(model_path, &mp, NULL), PQ_ERR_INVALID_ARGUMENT, "out_model is null");
    CHECK_ERROR(pq_model_load(NULL, &mp, &model), PQ_ERR_INVALID_ARGUMENT, "path is null");
    CHECK(model == NULL); /* cleared on failure */
    CHECK_ERROR(pq_model_load("/nonexistent/model.pq", &mp, &model), PQ_ERR_IO, "/nonexistent/model.pq");
    pq_model_params bad = mp;
    bad.size = 4;
    CHECK_ERROR(pq_model_load(model_path, &bad, &model), PQ_ERR_INVALID_ARGUMENT, "pq_model_params.size is 4");
    bad = mp;
    bad.verify_checksums = 7;
    CHECK_ERROR(pq_model_load(model_path, &bad, &model), PQ_ERR_INVALID_ARGUMENT, "verify_checksums");
    CHECK_ERROR(pq_model_load("\xC3\x28.pq", &mp, &model), PQ_ERR_TOKENIZER, "not valid UTF-8");

    /* A corrupt copy (one flipped bit in the weights) and a truncated copy are refused by name. */
    size_t n = 0;
    unsigned char *data = read_file(model_path, &n);
    CHECK(data != NULL && n > 4096);
    if (data) {
        char corrupt[] = "/tmp/pq-test-corrupt-XXXXXX";
        int fd = mkstemp(corrupt);
        close(fd);
        data[n - 100] ^= 0x10;
        write_file(corrupt, data, n);
        CHECK_ERROR(pq_model_load(corrupt, &mp, &model), PQ_ERR_MODEL_FORMAT, "checksum");
        write_file(corrupt, data, n / 2);
        CHECK_ERROR(pq_model_load(corrupt, &mp, &model), PQ_ERR_MODEL_FORMAT, corrupt);
        unlink(corrupt);
        free(data);
    }
    pq_model_free(NULL); /* accepted */
    pq_model_free((pq_model *)0x12345); /* a foreign pointer is ignored, not dereferenced */
}

static void test_model_info_and_tokens(pq_model *model) {
    pq_model_info info = {.size = sizeof(pq_model_info)};
    CHECK(pq_model_get_info(model, &info) == PQ_OK);
    CHECK(strcmp(info.architecture, "mobilellm-pro") == 0);
    CHECK(info.vocab_size > 258 && info.max_context >= 64 && info.layers > 0 && info.hidden_size > 0);
    CHECK(info.bos_id >= 0 && info.eos_id >= 0 && info.file_bytes > 0 && info.parameters > 0 && info.bits[0] != 0);
    CHECK_ERROR(pq_model_get_info(NULL, &info), PQ_ERR_INVALID_HANDLE, "model handle is null, freed or not a model");
    CHECK_ERROR(pq_model_get_info((pq_model *)0xdeadbeef, &info), PQ_ERR_INVALID_HANDLE, "not a model");
    CHECK_ERROR(pq_model_get_info(model, NULL), PQ_ERR_INVALID_ARGUMENT, "out_info is null");
    pq_model_info small = {.size = 8};
    CHECK_ERROR(pq_model_get_info(model, &small), PQ_ERR_INVALID_ARGUMENT, "pq_model_info.size is 8");

    pq_token tokens[16];
    int32_t n = pq_tokenize(model, "Hello", -1, 1, tokens, 16);
    CHECK(n == 6 && tokens[0] == info.bos_id);
    CHECK(pq_tokenize(model, "Hello", 3, 0, tokens, 16) == 3);          /* an explicit byte length */
    CHECK(pq_tokenize(model, "Hello", -1, 1, NULL, 0) == -6);           /* size query */
    CHECK(pq_tokenize(model, "Hello", -1, 1, tokens, 2) == -6);         /* too small: the count needed */
    CHECK_ERROR(pq_tokenize(model, "\xC3\x28", -1, 1, tokens, 16), PQ_SIZE_ERROR, "not valid UTF-8");
    CHECK_ERROR(pq_tokenize(model, NULL, -1, 1, tokens, 16), PQ_SIZE_ERROR, "text is null");
    CHECK(pq_tokenize(model, NULL, 0, 1, tokens, 16) == 1 && tokens[0] == info.bos_id); /* empty text */
    CHECK_ERROR(pq_tokenize(model, "Hi", -1, 1, NULL, 4), PQ_SIZE_ERROR, "tokens is null");
    CHECK_ERROR(pq_tokenize(NULL, "Hi", -1, 1, tokens, 16), PQ_SIZE_ERROR, "model handle");

    char text[64];
    n = pq_tokenize(model, "Hello, wörld", -1, 1, tokens, 16);
    CHECK(pq_detokenize(model, tokens, n, text, sizeof text) == (int32_t)strlen("Hello, wörld"));
    CHECK(strcmp(text, "Hello, wörld") == 0);
    CHECK(pq_detokenize(model, tokens, n, text, 4) == -(int32_t)(strlen("Hello, wörld") + 1));
    CHECK(pq_detokenize(model, tokens, 0, text, sizeof text) == 0 && text[0] == 0);
    pq_token bad[2] = {1, 1 << 30};
    CHECK_ERROR(pq_detokenize(model, bad, 2, text, sizeof text), PQ_SIZE_ERROR, "outside the vocabulary");
    CHECK_ERROR(pq_detokenize(model, NULL, 2, text, sizeof text), PQ_SIZE_ERROR, "tokens is null");
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

typedef struct collected { char text[4096]; int length; int calls; int stop_after; } collected;

static int32_t collect(const char *text, int32_t length, void *user_data) {
    collected *c = user_data;
    if (c->length + length < (int)sizeof c->text) {
        memcpy(c->text + c->length, text, (size_t)length);
        c->length += length;
        c->text[c->length] = 0;
    }
    return ++c->calls == c->stop_after;
}

static void test_decode_sample_generate(pq_model *model) {
    pq_context_params cp = pq_context_default_params();
    pq_context *ctx = NULL;
    CHECK_ERROR(pq_context_new(NULL, &cp, &ctx), PQ_ERR_INVALID_HANDLE, "model handle");
    CHECK_ERROR(pq_context_new(model, &cp, NULL), PQ_ERR_INVALID_ARGUMENT, "out_context is null");
    cp.threads = -1;
    CHECK_ERROR(pq_context_new(model, &cp, &ctx), PQ_ERR_INVALID_ARGUMENT, "threads -1");
    cp = pq_context_default_params();
    cp.kv_type = 7;
    CHECK_ERROR(pq_context_new(model, &cp, &ctx), PQ_ERR_INVALID_ARGUMENT, "kv_type 7");
    cp = pq_context_default_params();
    cp.context_length = 1 << 30;
    CHECK_ERROR(pq_context_new(model, &cp, &ctx), PQ_ERR_INVALID_ARGUMENT, "context length");
    CHECK(ctx == NULL);

    ctx = new_context(model, 32);
    int32_t vocab = 0;
    CHECK(pq_get_logits(ctx, &vocab) == NULL && strstr(pq_last_error(), "no logits"));
    pq_sampler_params sp = pq_sampler_default_params();
    CHECK_ERROR(pq_sample(ctx, &sp), PQ_ERR_INVALID_ARGUMENT, "no logits");

    pq_token tokens[8];
    int32_t n = pq_tokenize(model, "Hello", -1, 1, tokens, 8);
    CHECK(pq_decode(ctx, tokens, n) == PQ_OK);
    CHECK(pq_context_position(ctx) == n && pq_context_length(ctx) == 32);
    const float *logits = pq_get_logits(ctx, &vocab);
    pq_model_info info = {.size = sizeof info};
    pq_model_get_info(model, &info);
    CHECK(logits != NULL && vocab == info.vocab_size);

    /* Greedy sampling is the argmax; the token is not fed until the caller decodes it. */
    sp.temperature = 0;
    sp.repeat_penalty = 1;
    pq_token greedy = pq_sample(ctx, &sp);
    CHECK(greedy == argmax(logits, vocab));
    CHECK(pq_context_position(ctx) == n);
    CHECK(pq_decode(ctx, &greedy, 1) == PQ_OK && pq_context_position(ctx) == n + 1);

    pq_token bad = info.vocab_size;
    CHECK_ERROR(pq_decode(ctx, &bad, 1), PQ_ERR_TOKENIZER, "outside the vocabulary");
    CHECK_ERROR(pq_decode(ctx, tokens, 0), PQ_ERR_INVALID_ARGUMENT, "token count 0");
    CHECK_ERROR(pq_decode(ctx, NULL, 3), PQ_ERR_INVALID_ARGUMENT, "tokens is null");
    pq_token many[40] = {0};
    CHECK_ERROR(pq_decode(ctx, many, 40), PQ_ERR_CONTEXT_FULL, "context length 32");
    CHECK(pq_context_position(ctx) == n + 1); /* a refused call changes nothing */
    sp.size = 12;
    CHECK_ERROR(pq_sample(ctx, &sp), PQ_ERR_INVALID_ARGUMENT, "pq_sampler_params.size is 12");
    sp = pq_sampler_default_params();
    sp.top_p = 0;
    CHECK_ERROR(pq_sample(ctx, &sp), PQ_ERR_INVALID_ARGUMENT, "top-p 0");

    /* Seeded sampling is reproducible: two contexts, same inputs, same seed. */
    pq_context *other = new_context(model, 32);
    sp = pq_sampler_default_params();
    sp.seed = 7;
    CHECK(pq_context_reset(ctx) == PQ_OK && pq_context_position(ctx) == 0);
    pq_decode(ctx, tokens, n);
    pq_decode(other, tokens, n);
    for (int i = 0; i < 5; i++) {
        pq_token a = pq_sample(ctx, &sp), b = pq_sample(other, &sp);
        CHECK(a == b && a >= 0);
        pq_decode(ctx, &a, 1);
        pq_decode(other, &b, 1);
    }
    pq_context_free(other);

    /* Generation streams text, reports stats, and stops when the callback asks. */
    pq_context_reset(ctx);
    collected all = {.stop_after = -1};
    pq_generation_stats stats = {.size = sizeof stats};
    sp.temperature = 0;
    CHECK(pq_generate(ctx, "Hello", -1, &sp, 8, collect, &all, &stats) == PQ_OK);
    CHECK(stats.prompt_tokens == 6 && stats.generated_tokens >= 1 && stats.generated_tokens <= 8);
    CHECK(stats.stop_reason == PQ_STOP_MAX_TOKENS || stats.stop_reason == PQ_STOP_EOS);
    CHECK(pq_context_position(ctx) == 6 + stats.generated_tokens);
    CHECK(pq_get_logits(ctx, NULL) == NULL); /* generate leaves no logits to read */
    pq_context_reset(ctx);
    collected first = {.stop_after = 1};
    CHECK(pq_generate(ctx, "Hello", -1, &sp, 8, collect, &first, &stats) == PQ_OK);
    CHECK(first.calls == 1 && stats.stop_reason == PQ_STOP_CANCELLED);
    pq_context_reset(ctx);
    CHECK(pq_generate(ctx, "Hello", -1, &sp, 8, NULL, NULL, NULL) == PQ_OK); /* no callback, no stats */
    CHECK_ERROR(pq_generate(ctx, "\xff", -1, &sp, 8, NULL, NULL, NULL), PQ_ERR_TOKENIZER, "prompt");
    CHECK_ERROR(pq_generate(ctx, "Hi", -1, &sp, -1, NULL, NULL, NULL), PQ_ERR_INVALID_ARGUMENT, "max_tokens -1");
    pq_context_reset(ctx);
    CHECK_ERROR(pq_generate(ctx, "This prompt is far longer than the thirty-two tokens of this context.", -1, &sp, 8, NULL,
                            NULL, NULL), PQ_ERR_CONTEXT_FULL, "context length 32");

    pq_context_free(ctx);
    CHECK_ERROR(pq_context_position(ctx), PQ_ERR_INVALID_HANDLE, "context handle");
    CHECK_ERROR(pq_decode(ctx, tokens, n), PQ_ERR_INVALID_HANDLE, "context handle");
    pq_context_free(ctx); /* a second free is ignored */
    pq_context_free(NULL);
}

/* A context stays usable after its model's handle is freed; the handle itself is invalid at once. */
static void test_model_outlived_by_context(void) {
    pq_model *model = load();
    pq_context *ctx = new_context(model, 32);
    pq_model_free(model);
    pq_model_info info = {.size = sizeof info};
    CHECK_ERROR(pq_model_get_info(model, &info), PQ_ERR_INVALID_HANDLE, "model handle");
    CHECK(pq_generate(ctx, "Hello", -1, NULL, 4, NULL, NULL, NULL) == PQ_OK);
    pq_context_free(ctx);
}

/* Errors are per thread: a failure on another thread does not replace this thread's message. */
static void *fail_elsewhere(void *arg) {
    (void)arg;
    pq_model_get_info(NULL, NULL);
    return strstr(pq_last_error(), "model handle") ? (void *)1 : NULL;
}

static void test_errors_are_per_thread(void) {
    pq_tokenize(NULL, "x", -1, 0, NULL, 0);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", pq_last_error());
    pthread_t t;
    void *ok = NULL;
    pthread_create(&t, NULL, fail_elsewhere, NULL);
    pthread_join(t, &ok);
    CHECK(ok != NULL);
    CHECK(strcmp(mine, pq_last_error()) == 0 && strstr(mine, "pq_tokenize"));
}

/* An overlapping call on a busy context is refused, not run: the callback holds the first call open. */
typedef struct busy_state { pq_context *ctx; volatile int inside; volatile int release; } busy_state;

static int32_t hold(const char *text, int32_t length, void *user_data) {
    (void)text; (void)length;
    busy_state *s = user_data;
    s->inside = 1;
    while (!s->release) usleep(1000);
    return 1;
}

static void *generate_and_hold(void *arg) {
    busy_state *s = arg;
    pq_sampler_params sp = pq_sampler_default_params();
    sp.temperature = 0;
    pq_generate(s->ctx, "Hello", -1, &sp, 8, hold, s, NULL);
    return NULL;
}

static void test_busy_context(pq_model *model) {
    busy_state s = {.ctx = new_context(model, 64)};
    pthread_t t;
    pthread_create(&t, NULL, generate_and_hold, &s);
    while (!s.inside) usleep(1000);
    CHECK_ERROR(pq_context_position(s.ctx), PQ_ERR_BUSY, "another call on this context is running");
    s.release = 1;
    pthread_join(t, NULL);
    CHECK(pq_context_position(s.ctx) > 0);
    pq_context_free(s.ctx);
}

/* A callback may not call into its own context (refused as busy), but may free it: the running call then stops using
 * it and releases it when it returns. */
typedef struct reentry { pq_context *ctx; int32_t decode_status; int free_it; } reentry;

static int32_t call_back_in(const char *text, int32_t length, void *user_data) {
    (void)text; (void)length;
    reentry *r = user_data;
    pq_token t = 1;
    r->decode_status = pq_decode(r->ctx, &t, 1);
    if (r->free_it) pq_context_free(r->ctx);
    return 0;
}

static void test_reentry(pq_model *model) {
    reentry r = {.ctx = new_context(model, 64)};
    CHECK(pq_generate(r.ctx, "Hello", -1, NULL, 4, call_back_in, &r, NULL) == PQ_OK);
    CHECK(r.decode_status == PQ_ERR_BUSY);
    int32_t position = pq_context_position(r.ctx);
    CHECK(position >= 6 && position <= 10);
    r.free_it = 1;
    pq_generate(r.ctx, " again", -1, NULL, 4, call_back_in, &r, NULL);
    CHECK_ERROR(pq_context_position(r.ctx), PQ_ERR_INVALID_HANDLE, "context handle");
}

/* Several contexts on one model, on their own threads, for a bounded time: each greedy completion must equal the
 * single-threaded one, and memory must stay flat after warm-up. */
typedef struct worker { pq_model *model; const char *expected; int rounds; int mismatches; } worker;

static void greedy_text(pq_context *ctx, collected *out) {
    pq_sampler_params sp = pq_sampler_default_params();
    sp.temperature = 0;
    memset(out, 0, sizeof *out);
    out->stop_after = -1;
    pq_context_reset(ctx);
    pq_generate(ctx, "Hello", -1, &sp, 24, collect, out, NULL);
}

static void *work(void *arg) {
    worker *w = arg;
    pq_context *ctx = new_context(w->model, 64);
    collected out;
    for (int i = 0; i < w->rounds; i++) {
        greedy_text(ctx, &out);
        if (strcmp(out.text, w->expected) != 0) w->mismatches++;
    }
    pq_context_free(ctx);
    return NULL;
}

static long resident_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Passes of 4 threads x 5 completions, each thread creating and freeing its own context, for about 3 seconds (at
 * least 8 passes; PARETOQ_STRESS_SECONDS sets another duration for soak runs). Every completion must match, and
 * memory must level off: the managed heap grows for a few dozen passes and then stays flat (a 20-second soak here
 * plateaus at ~14 MiB by pass 25 and stays there through pass 787), so the last pass may not exceed the largest
 * resident size of the first half by more than 4 MiB. In 3 seconds here (~110 passes, ~450 contexts) that catches a
 * leak of ~20 KiB per context or ~4 KiB per completion; longer soak runs catch smaller ones.
 * PARETOQ_STRESS_NO_MEMORY_CHECK skips that check where the resident size is not the library's (under qemu it is
 * dominated by qemu's own translation caches, which keep growing). */
static void test_threads(pq_model *model) {
    pq_context *ctx = new_context(model, 64);
    collected reference;
    greedy_text(ctx, &reference);
    pq_context_free(ctx);
    CHECK(reference.length > 0);

    enum { THREADS = 4, MAX_PASSES = 100000 };
    static long resident[MAX_PASSES];
    worker workers[THREADS];
    int passes = 0, completions = 0;
    double start = seconds_now(), duration = getenv("PARETOQ_STRESS_SECONDS") ? atof(getenv("PARETOQ_STRESS_SECONDS")) : 3.0;
    while (passes < MAX_PASSES && (passes < 8 || seconds_now() - start < duration)) {
        pthread_t threads[THREADS];
        for (int i = 0; i < THREADS; i++) {
            workers[i] = (worker){.model = model, .expected = reference.text, .rounds = 5};
            pthread_create(&threads[i], NULL, work, &workers[i]);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(threads[i], NULL);
            CHECK(workers[i].mismatches == 0);
            completions += workers[i].rounds;
        }
        resident[passes++] = resident_kb();
        if (getenv("PARETOQ_STRESS_VERBOSE")) printf("pass %d: %ld KiB resident\n", passes, resident[passes - 1]);
    }
    long first_half = 0;
    for (int i = 0; i < passes / 2; i++)
        if (resident[i] > first_half) first_half = resident[i];
    long growth = resident[passes - 1] - first_half;
    printf("threads: %d passes, %d completions and %d contexts on %d threads agree; resident %ld KiB at the end, "
           "%+ld KiB against the first half's peak\n", passes, completions, passes * THREADS, THREADS, resident[passes - 1], growth);
    if (!getenv("PARETOQ_STRESS_NO_MEMORY_CHECK")) CHECK(growth < 4 * 1024);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.pq\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    CHECK(strcmp(pq_last_error(), "") == 0);
    test_version_and_loading();
    pq_model *model = load();
    if (!model) return 1;
    test_model_info_and_tokens(model);
    test_decode_sample_generate(model);
    test_model_outlived_by_context();
    test_errors_are_per_thread();
    test_busy_context(model);
    test_reentry(model);
    test_threads(model);
    pq_model_free(model);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all API checks passed\n");
    return 0;
}
