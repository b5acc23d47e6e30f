using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace ParetoQ.Bench;

/// <summary>
/// Aggregate throughput of a running OpenAI-compatible server (paretoq-serve, llama-server): <c>clients</c> concurrent
/// loops send completions until <c>requests</c> have been answered; completion tokens per second of wall time, from
/// the servers' own usage counts.
/// </summary>
public static class ServeBench
{
    public sealed record Result(int Clients, int Requests, long CompletionTokens, double Seconds, double MeanLatency)
    {
        public double TokensPerSecond => CompletionTokens / Seconds;
    }

    public static async Task<string> ModelIdAsync(HttpClient http)
    {
        using var models = JsonDocument.Parse(await http.GetStringAsync("v1/models"));
        return models.RootElement.GetProperty("data")[0].GetProperty("id").GetString()
            ?? throw new InvalidDataException("the server's /v1/models lists a model without an id");
    }

    public static async Task<Result> RunAsync(HttpClient http, string model, int clients, int requests, int maxTokens)
    {
        int next = 0;
        long tokens = 0;
        double latencySum = 0;
        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            for (int i; (i = Interlocked.Increment(ref next)) <= requests;)
            {
                // Sampled (seeded per request), so the answers differ as real traffic does.
                string body = $"{{\"model\": \"{JsonEncodedText.Encode(model)}\", " +
                    $"\"prompt\": \"Once upon a time, story {i}:\", \"max_tokens\": {maxTokens}, " +
                    $"\"temperature\": 0.8, \"seed\": {i}}}";
                var start = Stopwatch.GetTimestamp();
                using var response = await http.PostAsync("v1/completions",
                    new StringContent(body, Encoding.UTF8, "application/json"));
                string text = await response.Content.ReadAsStringAsync();
                if (!response.IsSuccessStatusCode)
                    throw new InvalidDataException($"the server answered {(int)response.StatusCode}: {text}");
                using var json = JsonDocument.Parse(text);
                Interlocked.Add(ref tokens, json.RootElement.GetProperty("usage").GetProperty("completion_tokens")
                    .GetInt64());
                double latency = Stopwatch.GetElapsedTime(start).TotalSeconds;
                lock (wall) latencySum += latency;
            }
        }));
        return new Result(clients, requests, tokens, wall.Elapsed.TotalSeconds, latencySum / requests);
    }
}
