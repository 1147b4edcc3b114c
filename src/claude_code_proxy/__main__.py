from claude_code_proxy.cli import main

if __name__ == "__main__":
    main()
