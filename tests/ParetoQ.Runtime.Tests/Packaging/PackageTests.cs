using System.Diagnostics;
using System.IO.Compression;
using ParetoQ.Runtime.Generation;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// The NuGet packages as a user meets them: packed into a local folder feed, installed into a fresh console app and as
/// a .NET tool, then generating text from the shipped model.
/// </summary>
public sealed class PackageTests
{
    private static readonly TimeSpan CommandLimit = TimeSpan.FromMinutes(5);

    private static string Repo => TestData.RepoRoot();
    private static string ModelPath => Path.Combine(Repo, "models", "stories260K-2bit.pq");

    // The configuration these tests were built in: the projects are packed from the same build (--no-build).
    private static string Configuration =>
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}")
            ? "Release" : "Debug";

    private static string Run(string directory, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true,
            RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(CommandLimit))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in {CommandLimit}");
        }
        if (p.ExitCode != 0)
            throw new InvalidOperationException(
                $"{file} {string.Join(' ', args)} exited {p.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }

    private static string Greedy(int maxTokens)
    {
        using var model = TextModel.Load(ModelPath, new TextModelOptions { Threads = 1 });
        return model.GenerateAsync("Once upon a time",
            new GenerationOptions { MaxTokens = maxTokens, Sampler = SamplerOptions.Greedy }).GetAwaiter().GetResult()
            .Text;
    }

    [Fact]
    public void Packages_install_into_a_fresh_app_and_as_a_tool_and_generate_text()
    {
        using var dir = new TempDir();
        string feed = Directory.CreateDirectory(dir.File("feed")).FullName;
        // A version of its own, so the global package cache cannot serve an older build of the same number.
        string version = $"{typeof(TextModel).Assembly.GetName().Version!.ToString(3)}-test." +
            $"{DateTime.UtcNow:yyyyMMddHHmmss}{Environment.ProcessId}";
        foreach (string project in new[] { "ParetoQ.Runtime", "ParetoQ.Extensions.AI", "ParetoQ.Cli" })
            Run(Repo, "dotnet", "pack", $"src/{project}/{project}.csproj", "-c", Configuration, "--no-build",
                "-o", feed, $"-p:Version={version}");
        // The binding is no dependency of the tests, so it is built here.
        Run(Repo, "dotnet", "pack", "src/ParetoQ.Interop/ParetoQ.Interop.csproj", "-c", Configuration, "-o", feed,
            $"-p:Version={version}");

        // Real metadata, one version for all, the README and the licence inside.
        using (var package = ZipFile.OpenRead(Path.Combine(feed, $"ParetoQ.Runtime.{version}.nupkg")))
        {
            Assert.NotNull(package.GetEntry("README.md"));
            Assert.NotNull(package.GetEntry("LICENSE"));
            using var nuspec = new StreamReader(package.GetEntry("ParetoQ.Runtime.nuspec")!.Open());
            string metadata = nuspec.ReadToEnd();
            Assert.Contains("<license type=\"expression\">MIT</license>", metadata);
            Assert.Contains($"<version>{version}</version>", metadata);
            Assert.DoesNotContain("Package Description", metadata);
        }

        string app = Directory.CreateDirectory(dir.File("app")).FullName;
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "app.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="ParetoQ.Extensions.AI" Version="{version}" />
              </ItemGroup>
            </Project>
            """);
        File.WriteAllText(Path.Combine(app, "Program.cs"), """
            using Microsoft.Extensions.AI;
            using ParetoQ.Extensions.AI;
            using ParetoQ.Runtime.Generation;

            using var model = TextModel.Load(args[0]);
            var result = await model.GenerateAsync("Once upon a time",
                new GenerationOptions { MaxTokens = 24, Sampler = SamplerOptions.Greedy });
            Console.WriteLine(result.Text);
            using IChatClient chat = new ParetoQChatClient(model);
            var reply = await chat.GetResponseAsync("Tell me about a cat.", new ChatOptions { MaxOutputTokens = 8 });
            Console.WriteLine($"chat: {reply.Usage?.OutputTokenCount} tokens");
            """);
        string output = Run(app, "dotnet", "run", "-c", "Release", "--", ModelPath);
        var lines = output.Split('\n');
        Assert.Equal(Greedy(24), lines[0]);
        Assert.Matches(@"^chat: [1-8] tokens$", lines[1]);

        // The program as a .NET tool.
        string tools = dir.File("tools");
        Run(app, "dotnet", "tool", "install", "paretoq-run", "--tool-path", tools, "--version", version,
            "--add-source", feed);
        string text = Run(app, Path.Combine(tools, "paretoq-run"), "--model", ModelPath, "--prompt",
            "Once upon a time", "-n", "16", "--temperature", "0", "--no-echo");
        Assert.Equal(Greedy(16), text.TrimEnd('\n'));
        // The tool carries the default model: no -m, from a folder that has none, and --list names it.
        string bare = Run(app, Path.Combine(tools, "paretoq-run"), "--prompt", "Once upon a time", "-n", "16",
            "--temperature", "0", "--no-echo");
        Assert.Equal(Greedy(16), bare.TrimEnd('\n'));
        Assert.Contains("stories260K-2bit.pq  124 KiB  mobilellm  2 bits  (default: used without -m)",
            Run(app, Path.Combine(tools, "paretoq-run"), "--list"));

        // The binding packed alone, as dotnet pack makes it, says which package brings the native library
        // (tools/package-check.sh installs it with ParetoQ.Native and generates text).
        string binding = Directory.CreateDirectory(dir.File("binding")).FullName;
        File.Copy(Path.Combine(app, "nuget.config"), Path.Combine(binding, "nuget.config"));
        File.WriteAllText(Path.Combine(binding, "binding.csproj"), File.ReadAllText(Path.Combine(app, "app.csproj"))
            .Replace("ParetoQ.Extensions.AI", "ParetoQ.Interop"));
        File.WriteAllText(Path.Combine(binding, "Program.cs"),
            "using var model = ParetoQ.Interop.ParetoQModel.Load(args[0]);\n");
        var missing = Assert.Throws<InvalidOperationException>(() =>
            Run(binding, "dotnet", "run", "-c", "Release", "--", ModelPath));
        Assert.Contains("reference the ParetoQ.Native package too", missing.Message);

        // The README's .NET snippet, compiled and run as written, from a folder that holds models/.
        string readme = File.ReadAllText(Path.Combine(Repo, "README.md"));
        int start = readme.IndexOf("```csharp\n", readme.IndexOf("### From .NET", StringComparison.Ordinal),
            StringComparison.Ordinal) + "```csharp\n".Length;
        File.WriteAllText(Path.Combine(app, "Program.cs"), readme[start..readme.IndexOf("```", start,
            StringComparison.Ordinal)]);
        File.Copy(ModelPath, Path.Combine(Directory.CreateDirectory(Path.Combine(app, "models")).FullName,
            "stories260K-2bit.pq"));
        string snippet = Run(app, "dotnet", "run", "-c", "Release");
        Assert.Matches(@"tok/s, stopped by (MaxTokens|EndOfSequence)\)", snippet);
        Assert.Matches(@"\n\[\d+ tokens\]\n", snippet);
    }
}
