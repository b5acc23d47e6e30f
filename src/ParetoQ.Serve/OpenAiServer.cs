using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server.Features;
using ParetoQ.Runtime.Generation;

namespace ParetoQ.Serve;

public sealed record ServerOptions
{
    public required string Model { get; init; }
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 8080;
    public int Parallel { get; init; } = 1;
    /// <summary>Requests that may wait for a session; more are refused with 503.</summary>
    public int Queue { get; init; } = 16;
    /// <summary>0: min(model maximum, 4096).</summary>
    public int Context { get; init; }
    public int Threads { get; init; }
    public string? ApiKey { get; init; }
    public long MaxBodyBytes { get; init; } = 1 << 20;
    /// <summary>A chat longer than the context: refused (400 context_length_exceeded, as OpenAI answers), or its
    /// oldest turns dropped (<see cref="ChatHistory.Fit"/>, the CLI's policy; the system message stays).</summary>
    public bool TruncateChats { get; init; }
    public TextWriter Log { get; init; } = Console.Error;
}

/// <summary>
/// An OpenAI-compatible HTTP server over one model: GET /health, GET /v1/models, POST /v1/completions and POST
/// /v1/chat/completions (JSON, or server-sent events ending with [DONE] when "stream" is true). Every refusal is a 4xx
/// or 503 with an OpenAI-style error object. JSON is written with Utf8JsonWriter, so the server publishes with
/// NativeAOT.
/// </summary>
public sealed class OpenAiServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServedModel _model;
    private readonly ServerOptions _options;

    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>The served model and its sessions (tests hold a session to fill the server).</summary>
    internal ServedModel Model => _model;

    // Quotes and apostrophes as themselves: the bodies are JSON for API clients, never embedded in HTML.
    private static readonly JsonWriterOptions JsonOptions =
        new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private OpenAiServer(WebApplication app, ServedModel model, ServerOptions options) =>
        (_app, _model, _options) = (app, model, options);

    public static async Task<OpenAiServer> StartAsync(ServerOptions options)
    {
        if (!IPAddress.TryParse(options.Host == "localhost" ? "127.0.0.1" : options.Host, out var address))
            throw new ArgumentException($"--host '{options.Host}' is not an IP address (or localhost)");
        if (options.Port is < 0 or > 65535) throw new ArgumentException($"--port {options.Port} is out of range");
        var model = new ServedModel(options.Model, options.Parallel, options.Queue, options.Context, options.Threads);
        try
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k =>
            {
                k.Listen(address, options.Port);
                k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
                k.AddServerHeader = false;
            });
            var app = builder.Build();
            var server = new OpenAiServer(app, model, options);
            // Every response the application writes carries an OpenAI error object, whatever fails: an exception
            // that escapes a handler becomes a logged 500 with one, not an empty body.
            app.Use(async (ctx, next) =>
            {
                try
                {
                    await next(ctx);
                }
                catch (Exception e) when (!ctx.Response.HasStarted && !ctx.RequestAborted.IsCancellationRequested)
                {
                    lock (options.Log) options.Log.WriteLine($"{DateTime.UtcNow:HH:mm:ss} {ctx.Request.Method} " +
                        $"{ctx.Request.Path} 500 {e.GetType().Name}: {e.Message}");
                    await WriteError(ctx, new ApiException(500, "internal error: " + e.Message, type: "server_error"));
                }
            });
            Route(app, "/health", "GET", server.Health);
            Route(app, "/v1/models", "GET", server.Models);
            Route(app, "/v1/completions", "POST", ctx => server.Generate(ctx, chat: false));
            Route(app, "/v1/chat/completions", "POST", ctx => server.Generate(ctx, chat: true));
            // "{**path}" matches file-like paths too (/index.html): the default fallback pattern skips them.
            app.MapFallback("{**path}", async ctx =>
            {
                await DrainBody(ctx);
                await WriteError(ctx, new ApiException(404, $"no route {ctx.Request.Path}", code: "not_found"));
            });
            await app.StartAsync();
            var bound = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
                .Features.Get<IServerAddressesFeature>()!.Addresses.First();
            server.BaseAddress = new Uri(bound.Replace("0.0.0.0", "127.0.0.1").Replace("[::]", "[::1]"));
            return server;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    // One handler per path for every method, so a known path with the wrong method is a 405 with an error object and
    // an Allow header (routing alone answers an empty 405).
    private static void Route(WebApplication app, string path, string method, RequestDelegate handler) =>
        app.Map(path, async ctx =>
        {
            if (HttpMethods.Equals(ctx.Request.Method, method)
                || method == "GET" && HttpMethods.IsHead(ctx.Request.Method))
            {
                await handler(ctx);
                return;
            }
            await DrainBody(ctx);
            ctx.Response.Headers.Allow = method;
            await WriteError(ctx, new ApiException(405, $"{path} takes {method}, not {ctx.Request.Method}",
                code: "method_not_allowed"));
        });

    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _model.Dispose();
    }

    private Task Health(HttpContext ctx) => WriteJson(ctx, 200, w =>
    {
        w.WriteString("status", "ok");
        w.WriteString("model", _model.Id);
    });

    private Task Models(HttpContext ctx)
    {
        if (!Authorized(ctx)) return WriteError(ctx, Unauthorized());
        return WriteJson(ctx, 200, w =>
        {
            w.WriteString("object", "list");
            w.WriteStartArray("data");
            w.WriteStartObject();
            w.WriteString("id", _model.Id);
            w.WriteString("object", "model");
            w.WriteNumber("created", _model.Created);
            w.WriteString("owned_by", "paretoq");
            w.WriteNumber("context_length", _model.ContextLength);
            w.WriteEndObject();
            w.WriteEndArray();
        });
    }

    private async Task Generate(HttpContext ctx, bool chat)
    {
        var clock = Stopwatch.StartNew();
        GenerationResult? result = null;
        string? gone = null;
        ServedModel.Admission? admission = null;
        try
        {
            if (!Authorized(ctx)) throw Unauthorized();
            // Admitted before the body is read: a refused request never holds its body, text or tokens.
            admission = _model.TryAdmit() ?? throw new ApiException(503,
                "every session is busy and the queue is full; retry later", code: "server_busy", type: "server_error");
            var request = await ReadRequest(ctx, chat, _options.MaxBodyBytes);
            if (request.Model != _model.Id)
                throw new ApiException(404,
                    $"the model '{request.Model}' does not exist; this server has '{_model.Id}'", "model",
                    "model_not_found");
            // No token decodes to more than MaxTokenBytes bytes, so a longer text cannot fit: refused untokenized.
            long textBytes = chat ? request.Messages!.Sum(m => (long)Encoding.UTF8.GetByteCount(m.Content))
                : Encoding.UTF8.GetByteCount(request.Prompt!);
            bool truncate = chat && _options.TruncateChats;
            if (!truncate && textBytes > (long)_model.ContextLength * _model.MaxTokenBytes)
                throw new ApiException(400, $"the prompt has {textBytes} bytes, more than the context of " +
                    $"{_model.ContextLength} tokens can hold", chat ? "messages" : "prompt", "context_length_exceeded");
            int[] prompt = truncate ? FitChat(ctx, request)
                : chat ? _model.ChatTemplate.Encode(request.Messages!)
                : _model.Tokenizer.Encode(request.Prompt!, addBos: true);
            if (prompt.Length >= _model.ContextLength)
                throw new ApiException(400,
                    $"the prompt has {prompt.Length} tokens, and the context is {_model.ContextLength}",
                    chat ? "messages" : "prompt", "context_length_exceeded");
            int room = _model.ContextLength - prompt.Length;
            if (request.MaxTokens > room)
                throw new ApiException(400, $"'max_tokens' is {request.MaxTokens}, but the prompt's " +
                    $"{prompt.Length} tokens leave room for {room} in the context of {_model.ContextLength}",
                    "max_tokens", "context_length_exceeded");
            var options = new GenerationOptions
            {
                MaxTokens = request.MaxTokens ?? room,
                Sampler = new SamplerOptions
                {
                    Temperature = request.Temperature, TopP = request.TopP, TopK = 0, MinP = 0,
                    Seed = request.Seed ?? SamplerOptions.RandomSeed(),
                },
                StopStrings = chat ? [.. request.Stop, .. _model.ChatTemplate.StopStrings] : request.Stop,
                EosIds = chat ? [.. _model.EosIds, .. _model.ChatTemplate.EndOfTurnIds] : _model.EosIds,
            };
            using var lease = await admission.LeaseAsync(ctx.RequestAborted);
            var reply = new Reply(chat, _model.Id);
            result = request.Stream
                ? await Stream(ctx, new Generator(lease.Session, _model.Tokenizer), prompt, options, reply,
                    request.IncludeUsage)
                : await Task.Run(() => new Generator(lease.Session, _model.Tokenizer).Generate(prompt, options,
                    cancellation: ctx.RequestAborted));
            if (result is null || result.Reason == StopReason.Cancelled)
                gone = $"the client closed the connection after {lease.Session.Position - prompt.Length} tokens";
            else if (!request.Stream) await WriteJson(ctx, 200, w => reply.WriteWhole(w, result));
        }
        catch (ApiException e)
        {
            admission?.Dispose(); // the refusal below holds no request memory
            if (!ctx.Response.HasStarted)
            {
                await DrainBody(ctx);
                await WriteError(ctx, e);
            }
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            gone = "the client closed the connection while queued";
        }
        finally
        {
            admission?.Dispose();
        }
        Log(ctx, clock.Elapsed, result, gone);
    }

    // Server-sent events: each text piece as soon as it is final, then the finish reason, usage if asked, [DONE]. The
    // generator runs only a few pieces ahead of the client (Generator.StreamAsync), so a client that goes away stops
    // its generation at the first failed write.
    private static async Task<GenerationResult?> Stream(HttpContext ctx, Generator generator, int[] prompt,
        GenerationOptions options, Reply reply, bool includeUsage)
    {
        ctx.Response.StatusCode = 200;
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        GenerationResult? result = null;
        try
        {
            if (reply.Chat) await WriteEvent(ctx, w => reply.WriteChunk(w, null, first: true, null));
            await foreach (var update in generator.StreamAsync(prompt, options, ctx.RequestAborted))
            {
                if (update.Result is null) await WriteEvent(ctx, w => reply.WriteChunk(w, update.Text, first: false, null));
                result = update.Result;
            }
            if (result is null || result.Reason == StopReason.Cancelled) return result;
            await WriteEvent(ctx, w => reply.WriteChunk(w, reply.Chat ? null : "", first: false, result));
            if (includeUsage) await WriteEvent(ctx, w => reply.WriteUsageChunk(w, result));
            await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        }
        catch (Exception e)
            when (e is IOException or OperationCanceledException || ctx.RequestAborted.IsCancellationRequested)
        {
            // The client is gone; leaving the enumeration has stopped the generator.
        }
        return result;
    }

    private static async Task WriteEvent(HttpContext ctx, Action<Utf8JsonWriter> body)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        System.Buffers.BuffersExtensions.Write(buffer, "data: "u8);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        System.Buffers.BuffersExtensions.Write(buffer, "\n\n"u8);
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    // --chat-overflow truncate: the oldest turns leave until the prompt and the reply's room (max_tokens, or a quarter
    // of the context) fit; the response says how many went in X-Dropped-Messages.
    private int[] FitChat(HttpContext ctx, OpenAiRequest request)
    {
        var kept = request.Messages!.ToList();
        int room = request.MaxTokens ?? Math.Max(1, _model.ContextLength / 4);
        try
        {
            var (ids, dropped) = ChatHistory.Fit(_model.ChatTemplate, kept, _model.ContextLength - room);
            if (dropped > 0) ctx.Response.Headers["X-Dropped-Messages"] = dropped.ToString(CultureInfo.InvariantCulture);
            return ids;
        }
        catch (Runtime.Model.ContextLengthExceededException e)
        {
            throw new ApiException(400, e.Message, "messages", "context_length_exceeded");
        }
    }

    private static async Task<OpenAiRequest> ReadRequest(HttpContext ctx, bool chat, long maxBodyBytes)
    {
        // The body is read as JSON whatever the header says it is, as llama-server does: `curl -d` labels it a form
        // (application/x-www-form-urlencoded) unless told otherwise. Only a multipart upload is refused by type.
        if (ctx.Request.ContentType is { } type
            && type.StartsWith("multipart/", StringComparison.OrdinalIgnoreCase))
            throw new ApiException(415, $"the body must be JSON (application/json), not {type}");
        byte[] body = await ReadBody(ctx, maxBodyBytes);
        using var document = OpenAiRequest.ParseJson(body);
        return OpenAiRequest.Parse(document.RootElement, chat);
    }

    /// <summary>
    /// The whole body, at most <paramref name="maxBodyBytes"/> (Kestrel enforces the limit as it reads). Every way
    /// reading can fail, a malformed or overflowing chunk size, a body that stops short of its Content-Length or
    /// trickles in, becomes an error object with the status Kestrel chose.
    /// </summary>
    private static async Task<byte[]> ReadBody(HttpContext ctx, long maxBodyBytes)
    {
        if (ctx.Request.ContentLength > maxBodyBytes) throw TooLarge();
        var buffer = new MemoryStream(ctx.Request.ContentLength is long n ? (int)n : 4096);
        try
        {
            await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
        }
        catch (BadHttpRequestException e)
        {
            throw e.StatusCode switch
            {
                413 => TooLarge(),
                408 => new ApiException(408, "the request body arrived too slowly, or ended before its Content-Length",
                    code: "request_timeout"),
                _ => new ApiException(e.StatusCode is >= 400 and < 500 ? e.StatusCode : 400,
                    $"the request body is malformed: {e.Message}"),
            };
        }
        catch (Exception e) when (e is not OperationCanceledException || !ctx.RequestAborted.IsCancellationRequested)
        {
            throw new ApiException(400, $"the request body is malformed or could not be read: {e.Message}");
        }
        return buffer.ToArray();
    }

    private static ApiException TooLarge() =>
        new(413, "the body is larger than the server's limit", code: "request_too_large");

    /// <summary>
    /// Reads and discards what is left of the body before an error is sent: a server that answers and closes while the
    /// client is still sending makes the kernel reset the connection, and the client may lose the answer. Bounded by
    /// the body limit; a body that cannot be read is left as it is.
    /// </summary>
    private static async Task DrainBody(HttpContext ctx)
    {
        try
        {
            var scratch = new byte[16 * 1024];
            while (await ctx.Request.Body.ReadAsync(scratch, ctx.RequestAborted) > 0) { }
        }
        catch (Exception e) when (e is BadHttpRequestException or IOException or OperationCanceledException
            or InvalidOperationException)
        {
        }
    }

    // Constant time in the key's bytes: a comparison that stops at the first difference tells an attacker, by timing,
    // how much of a guess is right.
    private bool Authorized(HttpContext ctx)
    {
        if (_options.ApiKey is null) return true;
        byte[] expected = Encoding.UTF8.GetBytes("Bearer " + _options.ApiKey);
        byte[] given = Encoding.UTF8.GetBytes(ctx.Request.Headers.Authorization.ToString());
        return System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, expected);
    }

    private static ApiException Unauthorized() =>
        new(401, "a valid API key is required (Authorization: Bearer KEY)", code: "invalid_api_key");

    private static Task WriteError(HttpContext ctx, ApiException e)
    {
        if (e.Status == 503) ctx.Response.Headers.RetryAfter = "1";
        return WriteJson(ctx, e.Status, w =>
        {
            w.WriteStartObject("error");
            w.WriteString("message", e.Message);
            w.WriteString("type", e.Type);
            if (e.Param is null) w.WriteNull("param"); else w.WriteString("param", e.Param);
            if (e.Code is null) w.WriteNull("code"); else w.WriteString("code", e.Code);
            w.WriteEndObject();
        });
    }

    private static async Task WriteJson(HttpContext ctx, int status, Action<Utf8JsonWriter> body)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, JsonOptions))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = buffer.WrittenCount;
        await ctx.Response.Body.WriteAsync(buffer.WrittenMemory, CancellationToken.None);
    }

    // One line per request: method, path, status, tokens, decode speed, time.
    private void Log(HttpContext ctx, TimeSpan elapsed, GenerationResult? r, string? gone)
    {
        var line = new StringBuilder($"{DateTime.UtcNow:HH:mm:ss} {ctx.Request.Method} {ctx.Request.Path} " +
            (gone ?? ctx.Response.StatusCode.ToString()));
        if (r is not null && gone is null)
            line.Append($" prompt {r.PromptTokens} tokens, generated {r.GeneratedTokens} at " +
                $"{r.DecodeTokensPerSecond:F1} tok/s, {r.Reason}");
        line.Append($", {elapsed.TotalSeconds:F3} s");
        lock (_options.Log) _options.Log.WriteLine(line.ToString());
    }

    /// <summary>The response objects of one request: ids, the model name, and completion or chat shapes.</summary>
    private sealed class Reply(bool chat, string model)
    {
        public bool Chat { get; } = chat;
        private readonly string _id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N");
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        private void Header(Utf8JsonWriter w, bool chunk)
        {
            w.WriteString("id", _id);
            w.WriteString("object", Chat ? chunk ? "chat.completion.chunk" : "chat.completion" : "text_completion");
            w.WriteNumber("created", _created);
            w.WriteString("model", model);
        }

        public void WriteWhole(Utf8JsonWriter w, GenerationResult r)
        {
            Header(w, chunk: false);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (Chat)
            {
                w.WriteStartObject("message");
                w.WriteString("role", "assistant");
                w.WriteString("content", r.Text);
                w.WriteEndObject();
            }
            else
            {
                w.WriteString("text", r.Text);
                w.WriteNull("logprobs");
            }
            w.WriteString("finish_reason", FinishReason(r.Reason));
            w.WriteEndObject();
            w.WriteEndArray();
            Usage(w, r);
        }

        /// <summary>A stream event: a text piece, the role (first chat event), or the finish reason (final).</summary>
        public void WriteChunk(Utf8JsonWriter w, string? text, bool first, GenerationResult? final)
        {
            Header(w, chunk: true);
            w.WriteStartArray("choices");
            w.WriteStartObject();
            w.WriteNumber("index", 0);
            if (Chat)
            {
                w.WriteStartObject("delta");
                if (first) w.WriteString("role", "assistant");
                if (first || text is not null) w.WriteString("content", text ?? "");
                w.WriteEndObject();
            }
            else
            {
                w.WriteString("text", text ?? "");
                w.WriteNull("logprobs");
            }
            if (final is null) w.WriteNull("finish_reason");
            else w.WriteString("finish_reason", FinishReason(final.Reason));
            w.WriteEndObject();
            w.WriteEndArray();
        }

        public void WriteUsageChunk(Utf8JsonWriter w, GenerationResult r)
        {
            Header(w, chunk: true);
            w.WriteStartArray("choices");
            w.WriteEndArray();
            Usage(w, r);
        }

        private static void Usage(Utf8JsonWriter w, GenerationResult r)
        {
            w.WriteStartObject("usage");
            w.WriteNumber("prompt_tokens", r.PromptTokens);
            w.WriteNumber("completion_tokens", r.GeneratedTokens);
            w.WriteNumber("total_tokens", r.PromptTokens + r.GeneratedTokens);
            w.WriteEndObject();
        }

        private static string FinishReason(StopReason reason) =>
            reason is StopReason.EndOfSequence or StopReason.StopString ? "stop" : "length";
    }
}
